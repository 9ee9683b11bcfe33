-- sesgate's quota scripts for Redis / Valkey. Each runs atomically on the server, so two
-- instances checking at once can never both take the last recipients of a quota. The time is
-- the server's (TIME), one clock for every instance. Mirrors src/quota/window.rs; a section of
-- this file runs as one script (see redis.rs): the PRELUDE is prepended to each.
--
-- One hash per scope, KEYS[i]: `tokens` and `at` (its rate bucket), `total` and `tail` (its
-- 24-hour window's count and oldest minute not yet dropped) and one field per minute holding
-- that minute's recipients. One hash, so that a check costs a read and a few writes per scope
-- (each redis.call costs microseconds: benches/README.md).
-- ARGV[1] the recipients; ARGV[2i] scope i's rate (recipients per second, 0: none) and
-- ARGV[2i+1] its 24-hour quota (0: none).

--@PRELUDE
local WINDOW = 1440
local MINUTE_MS = 60000
-- A window outlives its last bucket by a minute; then Redis drops it.
local WINDOW_TTL_MS = (WINDOW + 2) * MINUTE_MS

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function capacity(rate)
  return math.max(rate, 1)
end

-- A scope's state: {tokens, at, total, tail}, each nil when absent.
local function read(key)
  local state = redis.call('HMGET', key, 'tokens', 'at', 'total', 'tail')
  return {tonumber(state[1]), tonumber(state[2]), tonumber(state[3]), tonumber(state[4])}
end

-- The recipients still in the 24-hour window at `minute`, once the buckets whose recipients
-- are all older than 24 hours are dropped (written back only when some are).
local function trim(key, state, minute)
  local total, tail = state[3], state[4]
  if not total then
    return 0
  end
  local last = minute - WINDOW - 1
  if tail > last then
    return total
  end
  if last - tail > WINDOW then
    -- Every bucket is at most tail + WINDOW (each was added right after a trim): all older.
    redis.call('DEL', key)
    if state[1] then
      redis.call('HSET', key, 'tokens', string.format('%.17g', state[1]), 'at', state[2])
    end
    total = 0
  else
    for m = tail, last do
      local count = redis.call('HGET', key, tostring(m))
      if count then
        total = total - tonumber(count)
        redis.call('HDEL', key, tostring(m))
      end
    end
  end
  state[3], state[4] = total, last + 1
  redis.call('HSET', key, 'total', total, 'tail', last + 1)
  return total
end

-- A rate bucket's tokens at `now`, refilled since `at`, at most its capacity.
local function tokens_at(state, rate, now)
  if not state[1] then
    return capacity(rate)
  end
  local elapsed = math.max(0, now - state[2]) / 1000
  return math.min(capacity(rate), state[1] + rate * elapsed)
end

-- How long a key must live: a day's window while it counts a 24-hour quota, else until its
-- rate bucket would be full again (a missing bucket reads as full).
local function keep_ms(rate, tokens, daily)
  if daily > 0 then
    return WINDOW_TTL_MS
  end
  return math.max(1000, math.ceil((capacity(rate) - tokens) / rate * 1000) + 1000)
end

-- How long a reservation's record (RESERVE's last key) lives: long enough for a CANCEL sent
-- after a timed-out RESERVE to find it, or for its tombstone to stop a RESERVE still on its way.
local RECORD_TTL_MS = 10 * MINUTE_MS

-- Gives back n recipients counted in `minute` to the first `scopes` keys (ARGV as RESERVE's):
-- the tokens (at most to a full bucket) and the recipients still in that minute.
local function give_back(scopes, n, minute, now)
  for i = 1, scopes do
    local rate, daily = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
    local state = read(KEYS[i])
    if rate > 0 and state[1] then
      local t = math.min(capacity(rate), tokens_at(state, rate, now) + n)
      redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', t), 'at', now)
    end
    if daily > 0 then
      local counted = tonumber(redis.call('HGET', KEYS[i], minute) or '0')
      local taken = math.min(n, counted)
      if taken > 0 then
        redis.call('HINCRBY', KEYS[i], minute, -taken)
        redis.call('HINCRBY', KEYS[i], 'total', -taken)
      end
    end
  end
end

--@RESERVE
-- Checks every scope's 24-hour quota, then every rate, and only when all admit takes the
-- recipients from each. Replies {status, scope, wait_ms, minute, total_1, ..., total_k}:
-- status 0 a 24-hour quota is exhausted (scope is its index), 1 a rate needs wait_ms more, 2
-- taken (total_i the window's recipients after this, -1 where the scope has no 24-hour quota);
-- 3 the caller gave up on this reservation already (CANCEL ran first): nothing taken.
-- The last key is the reservation's record: what CANCEL needs, written when taken.
local scopes = #KEYS - 1
local record = KEYS[#KEYS]
if redis.call('EXISTS', record) == 1 then
  return {3, 0, 0, 0}
end
local n = tonumber(ARGV[1])
local now = now_ms()
local minute = math.floor(now / MINUTE_MS)
local states, totals, tokens = {}, {}, {}
for i = 1, scopes do
  states[i] = read(KEYS[i])
  local daily = tonumber(ARGV[2 * i + 1])
  if daily > 0 then
    totals[i] = trim(KEYS[i], states[i], minute)
    if totals[i] + n > daily then
      return {0, i, 0, minute}
    end
  end
end
local wait, slowest = 0, 0
for i = 1, scopes do
  local rate = tonumber(ARGV[2 * i])
  if rate > 0 then
    if states[i][2] and states[i][2] > now then
      -- The server's clock stepped back: the refill counts from now on. Left as it was, the
      -- bucket refilled nothing until the clock caught up, refusing all for as long.
      states[i][2] = now
      redis.call('HSET', KEYS[i], 'at', now)
    end
    local t = tokens_at(states[i], rate, now)
    tokens[i] = t
    if not (t >= n or t >= capacity(rate)) then
      local w = math.max(1, math.ceil((math.min(n, capacity(rate)) - t) / rate * 1000))
      if w > wait then
        wait, slowest = w, i
      end
    end
  end
end
if wait > 0 then
  return {1, slowest, wait, minute}
end
local reply = {2, 0, 0, minute}
redis.call('SET', record, minute, 'PX', RECORD_TTL_MS)
for i = 1, scopes do
  local rate, daily = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local fields = {}
  if rate > 0 then
    tokens[i] = tokens[i] - n
    fields[#fields + 1], fields[#fields + 2] = 'tokens', string.format('%.17g', tokens[i])
    fields[#fields + 1], fields[#fields + 2] = 'at', now
  end
  if daily > 0 then
    fields[#fields + 1], fields[#fields + 2] = 'total', totals[i] + n
    if not states[i][4] then
      fields[#fields + 1], fields[#fields + 2] = 'tail', minute - WINDOW
    end
    redis.call('HINCRBY', KEYS[i], tostring(minute), n)
    reply[#reply + 1] = totals[i] + n
  else
    reply[#reply + 1] = -1
  end
  if #fields > 0 then
    redis.call('HSET', KEYS[i], unpack(fields))
    redis.call('PEXPIRE', KEYS[i], keep_ms(rate, tokens[i] or 0, daily))
  end
end
return reply

--@REFUND
-- Gives back what RESERVE took for a message that was not relayed: the tokens (at most to a
-- full bucket) and the recipients counted in ARGV[2k+2], the minute RESERVE replied.
give_back(#KEYS, tonumber(ARGV[1]), ARGV[2 * #KEYS + 2], now_ms())
return 0

--@CANCEL
-- After a RESERVE whose reply never came (a timeout: the caller refused the message or relayed
-- it uncounted): gives back what it took, if it ran, and leaves a tombstone so that, if it has
-- not run yet, it takes nothing when it does. KEYS and ARGV are RESERVE's; sent on the same
-- connection, it runs after that RESERVE. Replies 1 when something was given back.
local scopes = #KEYS - 1
local record = KEYS[#KEYS]
local minute = redis.call('GET', record)
redis.call('SET', record, 'cancelled', 'PX', RECORD_TTL_MS)
if minute and minute ~= 'cancelled' then
  give_back(scopes, tonumber(ARGV[1]), minute, now_ms())
  return 1
end
return 0

--@EXCEEDS
-- Whether n more recipients would exceed a 24-hour quota: the first such scope's index, or 0.
-- Takes nothing (the RCPT-time check; the end of DATA takes).
local n = tonumber(ARGV[1])
local minute = math.floor(now_ms() / MINUTE_MS)
for i = 1, #KEYS do
  local daily = tonumber(ARGV[2 * i + 1])
  if daily > 0 and trim(KEYS[i], read(KEYS[i]), minute) + n > daily then
    return i
  end
end
return 0

--@RAISE
-- Raises a 24-hour window (KEYS[1]) to at least ARGV[1] recipients, the difference counted now;
-- replies the window's total.
local target = tonumber(ARGV[1])
local minute = math.floor(now_ms() / MINUTE_MS)
local state = read(KEYS[1])
local total = trim(KEYS[1], state, minute)
if target > total then
  redis.call('HINCRBY', KEYS[1], tostring(minute), target - total)
  redis.call('HSET', KEYS[1], 'total', target)
  if not state[4] then
    redis.call('HSET', KEYS[1], 'tail', minute - WINDOW)
  end
  redis.call('PEXPIRE', KEYS[1], WINDOW_TTL_MS)
  total = target
end
return total
