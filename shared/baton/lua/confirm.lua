-- Confirm, once the attempt is committed to the database and just before its request
-- is sent, that the attempt holds its slot, take one request from the algorithm's rate
-- limit, and set the slot's score to the attempt's deadline. If Redis lost its data
-- between admission and commit and was rebuilt without this attempt, take its room
-- again if the algorithm, the endpoint and the app's quota have it.
--
-- The rate limit is a GCRA: a theoretical arrival time that each request moves on by
-- per_seconds / requests, allowed while it is at most (burst - 1) such steps ahead of
-- now. Taken here, next to the send, what the algorithm receives keeps the limit
-- however many functions dispatch at once.
-- KEYS[1] running   (zset: score deadline, member "<task_id>:<attempt>")
-- KEYS[2] epoch     (string: absent after Redis lost its data)
-- KEYS[3] attempts  (hash: running member -> "<app>\t<cost>\t<endpoint url>[\t<admitted at>]")
-- KEYS[4] counts    (hash: inflight, app:<app>, ep:<url>, in cost units; pass:<app>)
-- KEYS[5] policy    (hash: cap, endpoints, url:<i>, cap:<i>, weight:<app>, limit:<app>,
--                   rate_interval, rate_burst)
-- KEYS[6] rate      (string: the theoretical arrival time)
-- ARGV[1] running member
-- ARGV[2] deadline score
-- ARGV[3] app
-- ARGV[4] cost
-- ARGV[5] endpoint url
-- ARGV[6] now (seconds since the epoch)
-- Returns 'ok', 'full' (no room: do not send), 'lost' (no state: reconcile first), or
-- 'rate' (no request left: the slot is kept; confirm again once one is).
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
local app_load = load('app:' .. ARGV[3])
local app_limit = tonumber(redis.call('HGET', KEYS[5], 'limit:' .. ARGV[3]) or '0')
local now = tonumber(ARGV[6])

-- True when a request may be sent now (and it is taken).
local function take_request()
  local interval = tonumber(redis.call('HGET', KEYS[5], 'rate_interval') or '0')
  if interval <= 0 then
    return true
  end
  local tolerance = (tonumber(redis.call('HGET', KEYS[5], 'rate_burst') or '1') - 1) * interval
  local tat = math.max(tonumber(redis.call('GET', KEYS[6]) or '0'), now)
  if tat - now > tolerance + 1e-9 then
    return false
  end
  tat = tat + interval
  -- Kept a little past the moment it stops mattering, so an idle key goes away.
  redis.call('SET', KEYS[6], tostring(tat), 'PX', math.ceil((tat - now + 60) * 1000))
  return true
end

if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  -- Reconcile restores every active attempt, including one like this whose admission
  -- was lost: if that put the algorithm, the endpoint or the app over its cap, this
  -- unsent attempt is the one to go. So is one whose endpoint left the policy.
  if endpoint_cap == nil or inflight > cap or endpoint_load > endpoint_cap
      or (app_limit > 0 and app_load > app_limit) then
    redis.call('ZREM', KEYS[1], ARGV[1])
    redis.call('HDEL', KEYS[3], ARGV[1])
    redis.call('HINCRBY', KEYS[4], 'inflight', -cost)
    redis.call('HINCRBY', KEYS[4], 'app:' .. ARGV[3], -cost)
    redis.call('HINCRBY', KEYS[4], 'ep:' .. ARGV[5], -cost)
    -- It never ran: its app gets back what admission charged its pass.
    local weight = tonumber(redis.call('HGET', KEYS[5], 'weight:' .. ARGV[3]) or '1')
    local pass = tonumber(redis.call('HGET', KEYS[4], 'pass:' .. ARGV[3]) or '0')
    redis.call('HSET', KEYS[4], 'pass:' .. ARGV[3], tostring(pass - cost / weight))
    return 'full'
  end
  if not take_request() then
    return 'rate'
  end
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
  return 'ok'
end
if endpoint_cap ~= nil and inflight + cost <= cap and endpoint_load + cost <= endpoint_cap
    and (app_limit == 0 or app_load + cost <= app_limit) then
  if not take_request() then
    return 'rate'
  end
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3] .. '\t' .. cost .. '\t' .. ARGV[5])
  redis.call('HINCRBY', KEYS[4], 'inflight', cost)
  redis.call('HINCRBY', KEYS[4], 'app:' .. ARGV[3], cost)
  redis.call('HINCRBY', KEYS[4], 'ep:' .. ARGV[5], cost)
  return 'ok'
end
return 'full'
