# cobalt: PostgreSQL extension (PGXS)

EXTENSION = cobalt
MODULE_big = cobalt
OBJS = \
	src/cobalt.o \
	src/guc.o \
	src/access.o \
	src/functions.o \
	src/request.o \
	src/submit_cache.o \
	src/store.o \
	src/launcher.o \
	src/worker.o \
	src/schedule.o \
	src/http.o \
	src/cobalt_json.o \
	src/outcome.o

DATA = sql/cobalt--1.0.sql
PGFILEDESC = "cobalt - Cobalt EHR API client"

REGRESS = setup operations submit status admin operator security
REGRESS_OPTS = --dbname=cobalt_regression

TAP_TESTS = 1

# Debian keeps pg_config out of PATH
PG_CONFIG ?= $(shell command -v pg_config 2>/dev/null || echo /usr/lib/postgresql/15/bin/pg_config)

PG_CPPFLAGS = $(shell pkg-config --cflags libcurl json-c)
SHLIB_LINK = $(shell pkg-config --libs libcurl json-c)
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: a struct changed in a header must
# rebuild every object (a stale one reads shared memory at old offsets).
$(OBJS): src/cobalt.h src/cobalt_pure.h
