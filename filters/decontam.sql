-- decontaminate: drop a trace whose problem or whose own text overlaps a benchmark item.
INSERT INTO rejects
SELECT a.request_id, 'decontam', 'contaminated:' || min(c.benchmark)
FROM traces a
JOIN contamination c
  ON c.params = '{{ params }}'
 AND ((c.kind = 'seed' AND c.id = a.seed_id) OR (c.kind = 'trace' AND c.id = a.request_id))
WHERE a.request_id NOT IN (SELECT request_id FROM rejects)
GROUP BY a.request_id;
