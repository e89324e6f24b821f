-- The "inventory at scale" data set: 1,000,000 movies with realistic, reproducible titles (fixed seed),
-- built in the database itself (generate_series and word lists), in one transaction with the trigram
-- index rebuilt once at the end (faster than maintaining it row by row). bench/infra.py runs it only when
-- the table does not already hold this data set (the COMMENT at the end marks it).
-- Parameters (psycopg2): rows, marker.
SET LOCAL maintenance_work_mem = '1GB';
TRUNCATE movies RESTART IDENTITY;
DROP INDEX IF EXISTS ix_movies_title_trgm;
SELECT setseed(0.2026);
INSERT INTO movies (title, description)
SELECT
  CASE pattern
    WHEN 0 THEN 'The ' || a1 || ' ' || n1
    WHEN 1 THEN n1 || ' of the ' || n2
    WHEN 2 THEN p1 || '''s ' || a1 || ' ' || n1
    WHEN 3 THEN 'Return to ' || pl
    WHEN 4 THEN 'A ' || a1 || ' ' || n1 || ' in ' || pl
    WHEN 5 THEN n1 || ': ' || 'The ' || a2 || ' ' || n2
    WHEN 6 THEN 'The ' || n1 || ' and the ' || n2
    ELSE a1 || ' ' || n1
  END
  -- About one title in 20,000 carries the rare word: the "rare term" of the search scenario.
  || CASE WHEN rare < 0.00005 THEN ' of the Axolotl' ELSE '' END
  || CASE WHEN sequel < 0.08 THEN ' ' || (ARRAY['II', 'III', 'IV', 'Part 2', 'Reloaded', 'Returns'])[1 + floor(sequel * 75)::int]
          WHEN sequel < 0.25 THEN ' (' || (1920 + floor(sequel * 400)::int) || ')'
          ELSE '' END,
  'A ' || lower(a2) || ' story of ' || lower(n2) || ' and ' || lower(n1) || ', set in ' || pl || '.'
FROM (
  SELECT
    floor(random() * 8)::int AS pattern,
    random() AS rare,
    random() AS sequel,
    adj[1 + floor(random() * array_length(adj, 1))::int] AS a1,
    adj[1 + floor(random() * array_length(adj, 1))::int] AS a2,
    noun[1 + floor(random() * array_length(noun, 1))::int] AS n1,
    noun[1 + floor(random() * array_length(noun, 1))::int] AS n2,
    person[1 + floor(random() * array_length(person, 1))::int] AS p1,
    place[1 + floor(random() * array_length(place, 1))::int] AS pl
  FROM generate_series(1, %(rows)s) AS i,
  (SELECT
    ARRAY['Dark', 'Silent', 'Lost', 'Last', 'Golden', 'Broken', 'Hidden', 'Eternal', 'Wild', 'Crimson', 'Frozen',
          'Forgotten', 'Secret', 'Burning', 'Electric', 'Little', 'Great', 'Lonely', 'Midnight', 'Savage', 'Sweet',
          'Bitter', 'Final', 'First', 'Endless', 'Wicked', 'Brave', 'Fallen', 'Shining', 'Red', 'Blue', 'Black',
          'White', 'Green', 'Dangerous', 'Beautiful', 'Strange', 'Infinite', 'Quiet', 'Restless'] AS adj,
    ARRAY['Love', 'River', 'Night', 'City', 'Storm', 'Heart', 'Kingdom', 'Shadow', 'Dream', 'War', 'Empire', 'Road',
          'Sea', 'Mountain', 'Ghost', 'Star', 'Summer', 'Winter', 'Garden', 'Island', 'Train', 'Hunter', 'King',
          'Queen', 'Soldier', 'Stranger', 'Detective', 'Witness', 'Promise', 'Secret', 'Fire', 'Rain', 'Moon', 'Sun',
          'Wolf', 'Dragon', 'Bridge', 'House', 'Mirror', 'Machine', 'Angel', 'Thief', 'Game', 'Voyage', 'Legend',
          'Horizon', 'Prophecy', 'Revenge', 'Escape', 'Journey', 'Silence', 'Memory', 'Circus', 'Harbor', 'Tower',
          'Desert', 'Forest', 'Letter', 'Song', 'Time'] AS noun,
    ARRAY['Anna', 'Jack', 'Maria', 'Tom', 'Elena', 'Max', 'Sophie', 'Leo', 'Clara', 'Sam', 'Nina', 'Oscar',
          'Lucy', 'Victor', 'Grace', 'Hugo', 'Iris', 'Felix', 'Rosa', 'Theo'] AS person,
    ARRAY['Paris', 'Tokyo', 'Berlin', 'Cairo', 'Lisbon', 'Havana', 'Moscow', 'Rome', 'Vienna', 'Istanbul', 'Dublin',
          'Chicago', 'Marseille', 'Shanghai', 'Mumbai', 'Rio', 'Oslo', 'Prague', 'Athens', 'Nairobi', 'Sydney',
          'Montreal', 'Seoul', 'Lima', 'Venice', 'Alaska', 'Texas', 'Mars', 'Eden', 'Avalon'] AS place
  ) AS w
) AS draws;
CREATE INDEX ix_movies_title_trgm ON movies USING gin (title gin_trgm_ops);
ANALYZE movies;
COMMENT ON TABLE movies IS %(marker)s;
