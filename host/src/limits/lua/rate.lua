-- GCRA rate limits, all-or-nothing across several buckets.
--
-- Each bucket stores its theoretical arrival time (TAT, ms, Redis clock).
-- KEYS: buckets. ARGV per bucket: interval (ms per unit), burst (ms of
-- tolerance: the window), cost (units this request takes).
--
-- Returns {allowed (1/0), retry_after_ms, remaining_1, reset_ms_1, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = #KEYS
local tats = {}
local retry = 0
for i = 1, n do
  local interval = tonumber(ARGV[(i - 1) * 3 + 1])
  local burst = tonumber(ARGV[(i - 1) * 3 + 2])
  local cost = tonumber(ARGV[(i - 1) * 3 + 3])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then
    tat = now
  end
  local new_tat = tat + interval * cost
  local allow_at = new_tat - burst
  -- A microsecond of slack: now + w - w need not equal now in floating point.
  if allow_at - now > 0.001 then
    retry = math.max(retry, allow_at - now)
  end
  tats[i] = {tat, new_tat, interval, burst}
end
local out = {0, math.ceil(retry)}
if retry <= 0 then
  out[1] = 1
end
for i = 1, n do
  local tat, new_tat, interval, burst = tats[i][1], tats[i][2], tats[i][3], tats[i][4]
  local effective = tat
  if out[1] == 1 then
    effective = new_tat
    redis.call('SET', KEYS[i], tostring(new_tat), 'PX', math.ceil(burst) + 1000)
  end
  local remaining = math.floor((burst - (effective - now)) / interval)
  if remaining < 0 then
    remaining = 0
  end
  out[2 + (i - 1) * 2 + 1] = remaining
  out[2 + (i - 1) * 2 + 2] = math.ceil(math.max(effective - now, 0))
end
return out
