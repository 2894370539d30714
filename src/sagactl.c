/*
 * sagactl.c - main() of sagactl; the program is src/ctl.c, in the library.
 */
#include "autoconf.h"

#include "ctl.h"

int
main(int argc, char **argv)
{
	return ctl_main(argc, argv);
}
