/*
 * saga_mode.h - a saga's execution mode (values match saga.v1.Mode), on its
 * own so that the config (which reads it per flow), the saga rules and the
 * bus layout (work.h: subjects differ by mode) share it without including
 * one another. Names of the modes as the config spells them:
 * config_mode_name() in config.h.
 */
#ifndef SAGAD_SAGA_MODE_H
#define SAGAD_SAGA_MODE_H

enum saga_mode {
	SAGA_MODE_UNSPECIFIED = 0,
	SAGA_MODE_SYNC = 1,
	SAGA_MODE_ASYNC = 2,
	SAGA_MODE_THROTTLING = 3,
};

#endif
