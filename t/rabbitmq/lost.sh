#!/bin/bash
# A suite of t/ run on the RabbitMQ driver: with QUEUE=rabbitmq, t/lib.sh
# starts rabbitmq-server and the suite points sagad at it. Named as the
# suite it runs (t/<name>), so that nothing is copied.
QUEUE=rabbitmq exec "${BASH:-bash}" "$top_srcdir/t/$(basename "$0")"
