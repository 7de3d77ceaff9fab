# ccrm — PGXS build.  The version lives only in ccrm.control.
EXTENSION   = ccrm
EXTVERSION := $(shell sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" ccrm.control)

MODULE_big  = ccrm
# sources live in src/<subsystem>/ (core, groups, activities, jobs, actions, messaging, ...)
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c src/*/*.c)))
# One source, extension/ccrm.sql, is the current version; the versioned
# install script is generated from it (as pgvector does).  The frozen first
# install script and every update script ship too, so that older versions can
# be installed and walked up (sql/upgrade.sql does).
DATA        = extension/ccrm--0.1.0.sql $(sort $(wildcard extension/ccrm--*--*.sql))
DATA_built  = extension/ccrm--$(EXTVERSION).sql

# pg_regress suite: every sql/*.sql is self-contained (creates and drops the extension).
REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-config=$(srcdir)/test/regress.conf

# The server headers are a system include directory for our build: GCC then
# does not warn about their static inline functions (lib/ilist.h and
# storage/bufpage.h leave parameters unused when assertions are off), while
# every warning in our own code stays on.  GCC ignores the -I that PGXS adds
# for the same directory.
PG_CPPFLAGS = -I$(srcdir)/src $(patsubst %/,-I$(srcdir)/%,$(sort $(wildcard src/*/))) -isystem $(shell $(PG_CONFIG) --includedir-server) \
              $(shell curl-config --cflags)
# libcurl sends mail and SMS from the delivery worker (delivery_worker.c)
SHLIB_LINK  = $(shell curl-config --libs)
# -Wmissing-field-initializers stays off: initializers such as
# { "name", fn } deliberately leave the trailing fields zero, as C defines.
PG_CFLAGS   = -Wall -Wextra -Werror -Wclobbered -Wsign-compare -Wunused-parameter \
              -Wno-missing-field-initializers

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

ifeq ($(EXTVERSION),)
$(error could not read default_version from ccrm.control)
endif

.PHONY: test demo bench version
version:
	@echo $(EXTVERSION)
# Whole suite (regress + isolation + TAP + checks) in throw-away instances.
test:
	bin/test
demo:
	bin/demo
bench: all
	test/bench/run

extension/ccrm--$(EXTVERSION).sql: extension/ccrm.sql ccrm.control
	{ echo '-- generated from extension/ccrm.sql by make: edit that file, not this one'; cat $<; } >$@
