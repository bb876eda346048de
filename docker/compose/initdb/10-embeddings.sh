#!/bin/bash
# Runs once in the primary's first start (docker-entrypoint-initdb.d).
set -euo pipefail
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
psql -v ON_ERROR_STOP=1 -U postgres <<'SQL'
CREATE ROLE app LOGIN PASSWORD 'app-pw';
CREATE DATABASE app OWNER app;
SQL
psql -v ON_ERROR_STOP=1 -U postgres -d app <<'SQL'
CREATE EXTENSION vector;
CREATE TABLE items (id bigserial PRIMARY KEY, doc text, embedding vector(16));
ALTER TABLE items OWNER TO app;
-- 100k clustered vectors: 40 centres plus noise
INSERT INTO items (doc, embedding)
SELECT 'seed ' || g,
       (SELECT ('[' || string_agg((((hashint4(g % 40 * 16 + i) & 1023) / 1023.0) + (random() - 0.5) * 0.1)::text, ',') || ']')::vector
          FROM generate_series(1, 16) i)
  FROM generate_series(1, 100000) g;
CREATE INDEX items_embedding ON items USING hnsw (embedding vector_l2_ops) WITH (m = 8, ef_construction = 32);
ANALYZE items;
SQL
