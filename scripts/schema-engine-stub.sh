#!/bin/sh
if [ "$1" = "--version" ]; then echo "schema-engine-cli stub (native engine not installed)"; exit 0; fi
echo "Prisma's native schema engine is not installed (offline). Use npm run db:migrate / db:migration:create / db:migration:check" >&2
exit 1
