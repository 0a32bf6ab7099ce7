-- Put tasks in an algorithm's ready queue, unless their attempt already holds a slot.
-- KEYS[1] ready queue   (zset: score -priority, member "<created_ms>:<task_id>:<attempt>")
-- KEYS[2] running set   (zset: score deadline, member "<task_id>:<attempt>")
-- ARGV    triplets: score, ready member, running member
-- Returns the number of entries added.
local added = 0
for i = 1, #ARGV, 3 do
  if not redis.call('ZSCORE', KEYS[2], ARGV[i + 2]) then
    added = added + redis.call('ZADD', KEYS[1], 'NX', ARGV[i], ARGV[i + 1])
  end
end
return added
