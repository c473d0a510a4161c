-- diversity figures that SQL answers directly: mixes and spreads of the selected corpus.
SELECT
  (SELECT count(*) FROM selected) AS kept,
  (SELECT count(DISTINCT seed_id) FROM selected) AS seeds,
  (SELECT avg(reasoning_words) FROM traces JOIN selected USING (request_id)) AS mean_reasoning_words,
  (SELECT stddev_pop(reasoning_words) FROM traces JOIN selected USING (request_id)) AS std_reasoning_words,
  (SELECT quantile_cont(reasoning_words, [0.1, 0.5, 0.9]) FROM traces JOIN selected USING (request_id)) AS reasoning_words_p10_p50_p90,
  -- distinct answers per seed among all parsed samples: 1.0 = every sample agrees
  (SELECT avg(n) FROM (SELECT count(DISTINCT answer) AS n FROM traces WHERE answer IS NOT NULL GROUP BY seed_id)) AS distinct_answers_per_seed,
  (SELECT count(DISTINCT answer) / greatest(count(*), 1) FROM traces JOIN selected USING (request_id)) AS answer_spread,
  (SELECT map(list(source), list(n)) FROM (SELECT source, count(*) AS n FROM traces JOIN selected USING (request_id) GROUP BY source ORDER BY source)) AS per_source,
  (SELECT map(list(teacher), list(n)) FROM (SELECT teacher, count(*) AS n FROM traces JOIN selected USING (request_id) GROUP BY teacher ORDER BY teacher)) AS per_teacher;
