#!/bin/bash
# A suite of t/ run on the RabbitMQ driver: t/lib.sh starts rabbitmq-server
# and points sagad at it when QUEUE=rabbitmq. Same name as the suite it runs.
QUEUE=rabbitmq exec "$BASH" "$top_srcdir/t/$(basename "$0")"
