#!/usr/bin/env bash
# Every SPI connection of ccrm goes through CcrmSPIConnect() or
# CcrmSPIConnectExt() (src/core/spi_debug.h), so that the test build poisons what
# SPI frees (src/core/spi_debug.c).  Lists the C files that call SPI_connect directly.
set -euo pipefail
cd "$1"
hits=$(grep -rnE --include='*.c' '\bSPI_connect(_ext)?[[:space:]]*\(' src | grep -v '/spi_debug\.c:' || true)
if [ -n "$hits" ]; then
	echo "connect with CcrmSPIConnect() or CcrmSPIConnectExt() from spi_debug.h, not SPI_connect:"
	echo "$hits"
	exit 1
fi
