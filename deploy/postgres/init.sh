#!/usr/bin/env bash
# The stack's PostgreSQL logins, run once by the postgres image when it
# initialises an empty data directory (docker-entrypoint-initdb.d), as the
# bootstrap superuser, which nothing else uses.
#
# Each login is a member of the group roles migration 0015 grants privileges
# to (created here, for the memberships, before any migration runs; 0015
# creates only those missing). Passwords come from the operator's environment
# (docs/security.md); use URL-safe ones, they are also written into URLs.
set -euo pipefail

for name in MIGRATOR ORDERS INVENTORY PAYMENTS SHIPPING RELAY CONSUMERS API TEMPORAL; do
    variable="PG_${name}_PASSWORD"
    if [ -z "${!variable:-}" ]; then
        echo "postgres-init: ${variable} is not set" >&2
        exit 1
    fi
done

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v db="$POSTGRES_DB" \
    -v migrator="$PG_MIGRATOR_PASSWORD" \
    -v orders="$PG_ORDERS_PASSWORD" \
    -v inventory="$PG_INVENTORY_PASSWORD" \
    -v payments="$PG_PAYMENTS_PASSWORD" \
    -v shipping="$PG_SHIPPING_PASSWORD" \
    -v relay="$PG_RELAY_PASSWORD" \
    -v consumers="$PG_CONSUMERS_PASSWORD" \
    -v api="$PG_API_PASSWORD" \
    -v temporal="$PG_TEMPORAL_PASSWORD" <<'SQL'
-- GROUP ROLES
CREATE ROLE saga_orders NOLOGIN;
CREATE ROLE saga_inventory NOLOGIN;
CREATE ROLE saga_payments NOLOGIN;
CREATE ROLE saga_shipping NOLOGIN;
CREATE ROLE saga_coordinator NOLOGIN;
CREATE ROLE saga_relay NOLOGIN;
CREATE ROLE saga_readmodels NOLOGIN;
CREATE ROLE saga_api NOLOGIN;
CREATE ROLE saga_audit NOLOGIN;
CREATE ROLE saga_xa_inventory NOLOGIN;
CREATE ROLE saga_xa_payments NOLOGIN;
-- END GROUP ROLES

-- Migrations run as the database's owner, who owns every schema they create;
-- not a superuser, and it creates no roles.
CREATE ROLE saga_migrator LOGIN PASSWORD :'migrator';
ALTER DATABASE :"db" OWNER TO saga_migrator;

-- LOGINS
-- The orders worker is also the 2PC coordinator and its recovery: it finishes
-- the participants' prepared branches, so it is a member of their branch roles.
CREATE ROLE app_orders LOGIN PASSWORD :'orders'
    IN ROLE saga_orders, saga_coordinator, saga_xa_inventory, saga_xa_payments;
CREATE ROLE app_inventory LOGIN PASSWORD :'inventory' IN ROLE saga_inventory, saga_xa_inventory;
CREATE ROLE app_payments LOGIN PASSWORD :'payments' IN ROLE saga_payments, saga_xa_payments;
CREATE ROLE app_shipping LOGIN PASSWORD :'shipping' IN ROLE saga_shipping;
CREATE ROLE app_relay LOGIN PASSWORD :'relay' IN ROLE saga_relay;
CREATE ROLE app_consumers LOGIN PASSWORD :'consumers' IN ROLE saga_readmodels;
CREATE ROLE app_api LOGIN PASSWORD :'api' IN ROLE saga_api;
-- END LOGINS

-- Temporal keeps its own databases, which no other login may open.
CREATE ROLE temporal LOGIN PASSWORD :'temporal';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
REVOKE CONNECT, TEMPORARY ON DATABASE temporal, temporal_visibility FROM PUBLIC;
SQL
