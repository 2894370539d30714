/*
 * dashboard.h - the dashboard's page (share/sagad/dashboard.html), built
 * into the binary by the Makefile as bytes: what the HTTP listener serves
 * at GET / (text/html; charset=utf-8). One self-contained page that speaks
 * only the JSON API.
 */
#ifndef SAGAD_DASHBOARD_H
#define SAGAD_DASHBOARD_H

#include <stddef.h>

extern const unsigned char	dashboard_html[];
extern const size_t		dashboard_html_len;

#endif
