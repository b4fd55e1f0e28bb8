//! The Lua scripts run inside Redis. Each runs atomically, so a bucket update or a registry
//! write is one step whatever the number of instances; the bucket script reads Redis's own
//! clock (`TIME`), so refill never depends on an instance's clock.

use redis::Script;

/// Takes tokens from a shared bucket. KEYS: the bucket. ARGV: capacity, rate per second,
/// tokens wanted, tokens given back (an ended lease). Answers {granted, ms until the caller's
/// turn for a whole token, whole tokens left, the exact level as text} (asking for 0 reads the
/// level and takes no turn).
///
/// Turns: an ask that leaves no whole token is promised the next token nobody else was
/// promised (`p`, when the token after the last promised one is due), so instances waiting
/// at a client's limit come back one after the other instead of all asking for each token.
/// A promise is advice, not a hold: whoever asks when a token is there gets it. A missing key
/// is a full bucket; a bucket that would be full again is deleted, otherwise it expires when
/// it would be full, so idle clients leave nothing behind.
const BUCKET: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2]) / 1000
local want = tonumber(ARGV[3])
local refund = tonumber(ARGV[4])
local saved = redis.call('HMGET', KEYS[1], 't', 'at', 'p')
local tokens = tonumber(saved[1])
local at = tonumber(saved[2])
local promised = tonumber(saved[3]) or 0
if tokens == nil or at == nil then
  tokens = capacity
elseif now > at then
  tokens = tokens + (now - at) * rate
end
tokens = math.min(capacity, tokens + refund)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
local wait = 0
if tokens < 1 then
  local due = now + (1 - tokens) / rate
  if want > 0 then
    due = math.max(due, promised)
    promised = due + 1 / rate
  end
  wait = math.ceil(due - now)
end
if tokens >= capacity then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', tostring(now), 'p', tostring(promised))
  redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate) + 1)
end
return {granted, wait, math.floor(tokens), tostring(tokens)}
";

/// Takes a routed request's tokens: `cost` from the client's bucket and one from its bucket on
/// the route, both or neither, for each of `requests` alike requests. KEYS: the client's
/// bucket, then the route bucket if the route has limits for this client. ARGV: requests, cost,
/// the client's capacity and rate per second, then the route bucket's. Answers {requests
/// granted, the client's level before, the route bucket's level before (-1 without one)}, the
/// levels as text. Buckets are kept like [`BUCKET`]'s: a full one deleted, others expiring.
const ROUTED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local function level(key, capacity, rate)
  local saved = redis.call('HMGET', key, 't', 'at')
  local tokens = tonumber(saved[1])
  local at = tonumber(saved[2])
  if tokens == nil or at == nil then
    return capacity
  end
  if now > at then
    tokens = tokens + (now - at) * rate
  end
  return math.min(capacity, tokens)
end
local function keep(key, tokens, capacity, rate)
  if tokens >= capacity then
    redis.call('DEL', key)
  else
    redis.call('HSET', key, 't', tostring(tokens), 'at', tostring(now))
    redis.call('PEXPIRE', key, math.ceil((capacity - tokens) / rate) + 1)
  end
end
local requests = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local rate = tonumber(ARGV[4]) / 1000
local client = level(KEYS[1], capacity, rate)
local granted = requests
if cost > 0 then
  granted = math.min(granted, math.floor(client / cost))
end
local route = -1
local route_capacity, route_rate
if KEYS[2] then
  route_capacity = tonumber(ARGV[5])
  route_rate = tonumber(ARGV[6]) / 1000
  route = level(KEYS[2], route_capacity, route_rate)
  granted = math.min(granted, math.floor(route))
end
if granted > 0 then
  if cost > 0 then
    keep(KEYS[1], client - granted * cost, capacity, rate)
  end
  if KEYS[2] then
    keep(KEYS[2], route - granted, route_capacity, route_rate)
  end
end
return {granted, tostring(client), tostring(route)}
";

/// Registers a client unless its id exists. KEYS: the clients hash, the change log.
/// ARGV: id, the client as JSON, the log's approximate length cap, the writing instance.
/// Answers 1, or 0 if it existed.
const CREATE: &str = r"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'op', 'put', 'id', ARGV[1], 'client', ARGV[2], 'action', 'created', 'by', ARGV[4])
return 1
";

/// Changes a client's fields. KEYS: the clients hash, the change log. ARGV: id, what to do
/// with the name (keep, set, clear), the name, capacity or '' to keep, rate or '' to keep, the
/// log's length cap, the writing instance, and its own limits on routes to change as JSON
/// (route → limits, or null to remove them; '' for none). Answers the client as JSON, or nil if
/// there is none.
const UPDATE: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then
  return false
end
local client = cjson.decode(current)
if ARGV[2] == 'set' then
  client.name = ARGV[3]
elseif ARGV[2] == 'clear' then
  client.name = nil
end
if ARGV[4] ~= '' then
  client.capacity = tonumber(ARGV[4])
end
if ARGV[5] ~= '' then
  client.rate_per_sec = tonumber(ARGV[5])
end
if ARGV[8] ~= '' then
  local routes = client.routes or {}
  for route, limits in pairs(cjson.decode(ARGV[8])) do
    if limits == cjson.null then
      routes[route] = nil
    else
      routes[route] = limits
    end
  end
  if next(routes) == nil then
    routes = nil
  end
  client.routes = routes
end
local json = cjson.encode(client)
redis.call('HSET', KEYS[1], ARGV[1], json)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'op', 'put', 'id', ARGV[1], 'client', json, 'action', 'updated', 'by', ARGV[7])
return json
";

/// Removes a client (its bucket is deleted apart). KEYS: the clients hash, the change log.
/// ARGV: id, the log's length cap, the writing instance. Answers 1, or 0 if there was none.
const DELETE: &str = r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'op', 'del', 'id', ARGV[1], 'action', 'deleted', 'by', ARGV[3])
return 1
";

/// An instance says it is alive, and which configuration version it runs. KEYS: the instances
/// sorted set, their versions (hash). ARGV: name, ms after which a silent instance is dropped,
/// its configuration version (0: none). Answers every live instance as {name, when it was last
/// seen (Redis's clock, unix ms), its version}.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - ttl)) do
  redis.call('HDEL', KEYS[2], gone)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
local live = {}
local seen = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #seen, 2 do
  local version = redis.call('HGET', KEYS[2], seen[i]) or '0'
  live[#live + 1] = {seen[i], seen[i + 1], version}
end
return live
";

/// Publishes the pools and routes as the cluster's next configuration version. KEYS: the
/// configuration hash, its log. ARGV: the pool file's text, the writing instance, the log's
/// length cap. Answers the new version.
const PUBLISH: &str = r"
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'text', ARGV[1], 'by', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'version', version, 'by', ARGV[2])
return version
";

/// The scripts, hashed once.
pub struct Scripts {
    pub bucket: Script,
    pub routed: Script,
    pub create: Script,
    pub update: Script,
    pub delete: Script,
    pub heartbeat: Script,
    pub publish: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            bucket: Script::new(BUCKET),
            routed: Script::new(ROUTED),
            create: Script::new(CREATE),
            update: Script::new(UPDATE),
            delete: Script::new(DELETE),
            heartbeat: Script::new(HEARTBEAT),
            publish: Script::new(PUBLISH),
        }
    }

    /// All of them, for loading after a (re)connect.
    pub fn all(&self) -> [&Script; 7] {
        [
            &self.bucket,
            &self.routed,
            &self.create,
            &self.update,
            &self.delete,
            &self.heartbeat,
            &self.publish,
        ]
    }
}
