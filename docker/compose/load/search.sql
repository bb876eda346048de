\set c random(0, 39)
SELECT id, doc FROM items ORDER BY embedding <-> (SELECT embedding FROM items WHERE id = :c * 1000 + 1) LIMIT 10;
