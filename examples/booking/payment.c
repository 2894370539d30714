/*
 * payment.c - the payment service of the booking example: a saga participant
 * that serves /booking.Payment/Create, Cancel and List. Everything but the
 * kind of service is in participant.c.
 */
#include "autoconf.h"

#include "participant.h"

int
main(int argc, char *argv[])
{
	return participant_main(argc, argv, &participant_payment);
}
