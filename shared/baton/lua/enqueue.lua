-- Put tasks in their apps' ready queues of one algorithm, unless their attempt already
-- holds a slot or is already queued.
-- KEYS[1] running   (zset: score deadline, member "<task_id>:<attempt>")
-- KEYS[2] attempts  (hash: running member -> "<app>\t<cost>[\t<endpoint url>]")
-- KEYS[3] counts    (hash: field ready counts the ready entries)
-- KEYS[4] apps      (set: apps with ready tasks)
-- KEYS[5..] ready queue of each app named in ARGV[2..1+N] (zset: score -priority,
--           member "<created_ms>:<task_id>:<attempt>")
-- ARGV[1] number N of apps
-- ARGV[2..1+N] app names, in the order of their ready queues in KEYS
-- ARGV[2+N..] quintuplets: app index (1-based), score, ready member, running member, cost
-- Returns the number of entries added.
local apps = tonumber(ARGV[1])
local added = 0
for i = 2 + apps, #ARGV, 5 do
  local index = tonumber(ARGV[i])
  local running = ARGV[i + 3]
  if not redis.call('ZSCORE', KEYS[1], running) then
    local app = ARGV[1 + index]
    if redis.call('ZADD', KEYS[4 + index], 'NX', ARGV[i + 1], ARGV[i + 2]) == 1 then
      added = added + 1
      redis.call('HSET', KEYS[2], running, app .. '\t' .. ARGV[i + 4])
      redis.call('SADD', KEYS[4], app)
    end
  end
end
if added > 0 then
  redis.call('HINCRBY', KEYS[3], 'ready', added)
end
return added
