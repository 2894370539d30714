/*
 * check_run.h - how every Check suite's main() ends: run the suite (its
 * verbosity from CK_VERBOSITY, normal by default) and turn the failures
 * into the exit status automake's test driver reads.
 */
#ifndef SAGAD_CHECK_RUN_H
#define SAGAD_CHECK_RUN_H

#include <check.h>
#include <stdlib.h>

static inline int
check_run(Suite *s)
{
	SRunner	*sr = srunner_create(s);
	int	 failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
