-- The embed tables exactly as wattfare_embed 0.1.0 created them on sqlite
-- (its metadata.create_all, captured once; never edit: the upgrade tests start from this).

CREATE TABLE wattfare_connections (
	id VARCHAR(40) NOT NULL,
	app_id VARCHAR(64) NOT NULL,
	app_user_id VARCHAR(255) NOT NULL,
	status VARCHAR(20) NOT NULL,
	authority VARCHAR(32) NOT NULL,
	monthly_cap BIGINT NOT NULL,
	period VARCHAR(7) NOT NULL,
	spent BIGINT NOT NULL,
	reserved BIGINT NOT NULL,
	credential TEXT,
	grant_id VARCHAR(128),
	upstream_url VARCHAR(512),
	hard_limit BIGINT,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT wattfare_connections_user UNIQUE (app_id, app_user_id),
	CONSTRAINT wattfare_connections_reserved_nonnegative CHECK (reserved >= 0),
	CONSTRAINT wattfare_connections_cap_nonnegative CHECK (monthly_cap >= 0)
);

CREATE INDEX wattfare_connections_grant ON wattfare_connections (grant_id);

CREATE TABLE wattfare_ledger (
	id VARCHAR(40) NOT NULL,
	connection_id VARCHAR(40) NOT NULL,
	app_id VARCHAR(64) NOT NULL,
	app_user_id VARCHAR(255) NOT NULL,
	kind VARCHAR(20) NOT NULL,
	model VARCHAR(255) NOT NULL,
	state VARCHAR(12) NOT NULL,
	reserved BIGINT NOT NULL,
	cost BIGINT,
	cost_source VARCHAR(12),
	generation_id VARCHAR(128),
	reconcile BOOLEAN NOT NULL,
	period VARCHAR(7) NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	settled_at BIGINT,
	PRIMARY KEY (id)
);

CREATE INDEX wattfare_ledger_reconcile ON wattfare_ledger (reconcile);

CREATE INDEX wattfare_ledger_open ON wattfare_ledger (state, expires_at);

CREATE INDEX wattfare_ledger_user ON wattfare_ledger (app_id, app_user_id, created_at);

CREATE TABLE wattfare_consent_requests (
	state VARCHAR(64) NOT NULL,
	app_id VARCHAR(64) NOT NULL,
	app_user_id VARCHAR(255) NOT NULL,
	authority VARCHAR(32) NOT NULL,
	verifier VARCHAR(128) NOT NULL,
	requested_cap BIGINT NOT NULL,
	return_to VARCHAR(2048) NOT NULL,
	mode VARCHAR(10) NOT NULL,
	redirect_uri VARCHAR(2048) NOT NULL,
	browser_hash VARCHAR(64) NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	used_at BIGINT,
	PRIMARY KEY (state)
);

CREATE TABLE wattfare_webhook_events (
	id VARCHAR(128) NOT NULL,
	received_at BIGINT NOT NULL,
	PRIMARY KEY (id)
);

CREATE TABLE wattfare_schema_version (
	version INTEGER NOT NULL,
	applied_at BIGINT NOT NULL,
	PRIMARY KEY (version)
);
