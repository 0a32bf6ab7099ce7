-- Put tasks in their apps' ready queues of one algorithm, unless their attempt already
-- holds a slot or is already queued. An app that becomes backlogged starts at the lowest
-- pass of the apps already waiting (see admit.lua), never below its own.
-- KEYS[1] running   (zset: score deadline, member "<task_id>:<attempt>")
-- KEYS[2] attempts  (hash: running member -> "<app>\t<cost>[\t<endpoint url>]")
-- KEYS[3] counts    (hash: ready, the ready entries; pass:<app>)
-- KEYS[4] apps      (set: apps with ready tasks)
-- KEYS[5..] ready queue of each app named in ARGV[2..1+N] (zset: score -priority,
--           member "<created_ms>:<task_id>:<attempt>")
-- ARGV[1] number N of apps
-- ARGV[2..1+N] app names, in the order of their ready queues in KEYS
-- ARGV[2+N..] quintuplets: app index (1-based), score, ready member, running member, cost
-- Returns the number of entries added.
local apps = tonumber(ARGV[1])
local added = 0
local waiting = nil  -- the lowest pass of the apps with ready tasks, read once if needed
local function lowest_waiting_pass()
  if waiting == nil then
    waiting = false
    for _, app in ipairs(redis.call('SMEMBERS', KEYS[4])) do
      local pass = tonumber(redis.call('HGET', KEYS[3], 'pass:' .. app) or '0')
      if waiting == false or pass < waiting then
        waiting = pass
      end
    end
  end
  return waiting
end
for i = 2 + apps, #ARGV, 5 do
  local index = tonumber(ARGV[i])
  local running = ARGV[i + 3]
  if not redis.call('ZSCORE', KEYS[1], running) then
    local app = ARGV[1 + index]
    if redis.call('ZADD', KEYS[4 + index], 'NX', ARGV[i + 1], ARGV[i + 2]) == 1 then
      added = added + 1
      redis.call('HSET', KEYS[2], running, app .. '\t' .. ARGV[i + 4])
      if redis.call('SISMEMBER', KEYS[4], app) == 0 then
        local floor = lowest_waiting_pass()
        local own = tonumber(redis.call('HGET', KEYS[3], 'pass:' .. app) or '0')
        if floor and floor > own then
          redis.call('HSET', KEYS[3], 'pass:' .. app, tostring(floor))
        end
        redis.call('SADD', KEYS[4], app)
      end
    end
  end
end
if added > 0 then
  redis.call('HINCRBY', KEYS[3], 'ready', added)
end
return added
