INSERT INTO items (doc, embedding)
SELECT 'ingest', (SELECT ('[' || string_agg(random()::text, ',') || ']')::vector FROM generate_series(1, 16))
  FROM generate_series(1, 50);
