-- Development only (deploy/compose.yaml): one role and one database per
-- service, as in production, so no service can read another's tables.
-- The passwords are development placeholders; production databases are
-- created by the platform team (docs/deployment.md, "Managed PostgreSQL").
CREATE ROLE sluice_catalog LOGIN PASSWORD 'dev-only-catalog';
CREATE ROLE sluice_orders LOGIN PASSWORD 'dev-only-orders';
CREATE ROLE sluice_access LOGIN PASSWORD 'dev-only-access';
CREATE ROLE sluice_audit LOGIN PASSWORD 'dev-only-audit';
CREATE ROLE sluice_dataservice LOGIN PASSWORD 'dev-only-dataservice';
CREATE DATABASE sluice_catalog OWNER sluice_catalog;
CREATE DATABASE sluice_orders OWNER sluice_orders;
CREATE DATABASE sluice_access OWNER sluice_access;
CREATE DATABASE sluice_audit OWNER sluice_audit;
CREATE DATABASE sluice_dataservice OWNER sluice_dataservice;
REVOKE ALL ON DATABASE sluice_catalog, sluice_orders, sluice_access, sluice_audit, sluice_dataservice FROM PUBLIC;
