-- Cool one endpoint of an algorithm down until a moment (it answered busy or failing),
-- unless it already cools down longer. The hash lives a minute past its last moment,
-- so a forgotten one cannot linger.
-- KEYS[1] cooldown  (hash: endpoint url -> time until which it cools down)
-- ARGV[1] endpoint url
-- ARGV[2] until (seconds since the epoch)
-- ARGV[3] now (seconds since the epoch)
-- Returns 1 if the cool-down was set or made longer, 0 if a longer one stands.
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local until_time = tonumber(ARGV[2])
if current >= until_time then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = math.ceil((until_time - tonumber(ARGV[3]) + 60) * 1000)
if ttl > redis.call('PTTL', KEYS[1]) then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
