-- Confirm, once the attempt is committed to the database and before its request is
-- sent, that the attempt holds its slot, and set the slot's score to the attempt's
-- deadline. If Redis lost its data between admission and commit and was rebuilt
-- without this attempt, take its room again if the algorithm and the endpoint have it.
-- KEYS[1] running   (zset: score deadline, member "<task_id>:<attempt>")
-- KEYS[2] epoch     (string: absent after Redis lost its data)
-- KEYS[3] attempts  (hash: running member -> "<app>\t<cost>\t<endpoint url>")
-- KEYS[4] counts    (hash: inflight, app:<app>, ep:<url>, in cost units)
-- KEYS[5] policy    (hash: cap, endpoints, url:<i>, cap:<i>)
-- ARGV[1] running member
-- ARGV[2] deadline score
-- ARGV[3] app
-- ARGV[4] cost
-- ARGV[5] endpoint url
-- Returns 'ok', 'full' (no room: do not send) or 'lost' (no state: reconcile first).
if redis.call('EXISTS', KEYS[2]) == 0 or redis.call('EXISTS', KEYS[5]) == 0 then
  return 'lost'
end
local cost = tonumber(ARGV[4])
local cap = tonumber(redis.call('HGET', KEYS[5], 'cap'))
local endpoint_cap = nil
for i = 1, tonumber(redis.call('HGET', KEYS[5], 'endpoints')) do
  if redis.call('HGET', KEYS[5], 'url:' .. i) == ARGV[5] then
    endpoint_cap = tonumber(redis.call('HGET', KEYS[5], 'cap:' .. i))
  end
end
local function load(field)
  return tonumber(redis.call('HGET', KEYS[4], field) or '0')
end
local inflight, endpoint_load = load('inflight'), load('ep:' .. ARGV[5])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  -- Reconcile restores every active attempt, including one like this whose admission
  -- was lost: if that put the algorithm or the endpoint over its cap, this unsent
  -- attempt is the one to go. So is one whose endpoint left the policy.
  if endpoint_cap == nil or inflight > cap or endpoint_load > endpoint_cap then
    redis.call('ZREM', KEYS[1], ARGV[1])
    redis.call('HDEL', KEYS[3], ARGV[1])
    redis.call('HINCRBY', KEYS[4], 'inflight', -cost)
    redis.call('HINCRBY', KEYS[4], 'app:' .. ARGV[3], -cost)
    redis.call('HINCRBY', KEYS[4], 'ep:' .. ARGV[5], -cost)
    return 'full'
  end
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
  return 'ok'
end
if endpoint_cap ~= nil and inflight + cost <= cap and endpoint_load + cost <= endpoint_cap then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3] .. '\t' .. cost .. '\t' .. ARGV[5])
  redis.call('HINCRBY', KEYS[4], 'inflight', cost)
  redis.call('HINCRBY', KEYS[4], 'app:' .. ARGV[3], cost)
  redis.call('HINCRBY', KEYS[4], 'ep:' .. ARGV[5], cost)
  return 'ok'
end
return 'full'
