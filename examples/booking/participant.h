/*
 * participant.h - the example saga participants (examples/booking): one
 * program per service (order, payment) around one shared implementation of
 * the Create / Cancel / List methods, failure injection, latency and
 * overload. A kind says what differs between the services; everything else,
 * flags included, is participant_main's.
 */
#ifndef SAGAD_EXAMPLES_PARTICIPANT_H
#define SAGAD_EXAMPLES_PARTICIPANT_H

struct participant_kind {
	const char	*name;		/* "order": logs, fault injection */
	const char	*service;	/* "booking.Order": the gRPC service */
	const char	*id_prefix;	/* "ord": ids are "ord-<n>" */
	const char	*id_key;	/* "order_id": the reply's context key */
	const char	*default_listen; /* "127.0.0.1:50051" */
};

extern const struct participant_kind participant_order;
extern const struct participant_kind participant_payment;

/* Parses the flags, serves until SIGTERM or SIGINT and returns the exit code. */
int	participant_main(int argc, char *argv[], const struct participant_kind *);

#endif
