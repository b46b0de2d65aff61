"""The registry's Lua scripts: every write of :mod:`driftline.models.registry` is one
of these, so it is atomic (a reader never sees a version without its artifact) and
concurrent promotions keep alias, rollback list and history in step. The comment above
each script documents its ``KEYS`` and ``ARGV``; the registry registers each once.
"""

from __future__ import annotations

from driftline.errors import RegistryError

# KEYS: counter, versions zset, models set, history stream, requests hash
# ARGV: model, version key prefix, artifact, checksum, meta JSON, created, status, actor, reason,
#       request id ('' for none), reference profile JSON ('' for none)
# Returns {version, 1} for a new version, {version, 0} when the request already made one.
REGISTER = """
if ARGV[10] ~= '' then
  local done = redis.call('HGET', KEYS[5], ARGV[10])
  if done then return {tonumber(done), 0} end
end
local v = redis.call('INCR', KEYS[1])
redis.call('HSET', ARGV[2] .. v, 'artifact', ARGV[3], 'checksum', ARGV[4], 'meta', ARGV[5],
           'created', ARGV[6], 'status', ARGV[7])
if ARGV[11] ~= '' then redis.call('HSET', ARGV[2] .. v, 'reference', ARGV[11]) end
redis.call('ZADD', KEYS[2], v, v)
redis.call('SADD', KEYS[3], ARGV[1])
local action = 'registered'
if ARGV[7] == 'rejected' then action = 'rejected' end
redis.call('XADD', KEYS[4], '*', 'action', action, 'version', v, 'alias', '', 'previous', '',
           'actor', ARGV[8], 'reason', ARGV[9], 'time', ARGV[6])
if ARGV[10] ~= '' then redis.call('HSET', KEYS[5], ARGV[10], v) end
return {v, 1}
"""

# KEYS: aliases hash, previous-targets list of the alias, history stream, version hash
# ARGV: alias, version, actor, reason, time, action, channel
SET_ALIAS = """
if redis.call('EXISTS', KEYS[4]) == 0 then return redis.error_reply('NOVERSION') end
if redis.call('HGET', KEYS[4], 'status') == 'archived' then
  return redis.error_reply('ARCHIVED')
end
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if prev == ARGV[2] then return {prev, 0} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if prev then redis.call('LPUSH', KEYS[2], prev) end
redis.call('XADD', KEYS[3], '*', 'action', ARGV[6], 'version', ARGV[2], 'alias', ARGV[1],
           'previous', prev or '', 'actor', ARGV[3], 'reason', ARGV[4], 'time', ARGV[5])
redis.call('PUBLISH', ARGV[7], ARGV[1] .. '=' .. ARGV[2])
return {prev or '', 1}
"""

# KEYS: aliases hash, previous-targets list of the alias, history stream
# ARGV: alias, actor, reason, time, channel, version key prefix, expected current target
#       ('' for any: the canary rolls back only the version it judged)
ROLLBACK = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[7] ~= '' and current ~= ARGV[7] then
  return redis.error_reply('NOTEXPECTED ' .. (current or ''))
end
local prev = redis.call('LPOP', KEYS[2])
while prev and redis.call('HGET', ARGV[6] .. prev, 'status') == 'archived' do
  prev = redis.call('LPOP', KEYS[2])
end
if not prev then return redis.error_reply('NOPREVIOUS') end
redis.call('HSET', KEYS[1], ARGV[1], prev)
redis.call('XADD', KEYS[3], '*', 'action', 'rolled_back', 'version', prev, 'alias', ARGV[1],
           'previous', current or '', 'actor', ARGV[2], 'reason', ARGV[3], 'time', ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[1] .. '=' .. prev)
return {prev, current or ''}
"""

# KEYS: aliases hash, history stream;  ARGV: alias, actor, reason, time, channel
DELETE_ALIAS = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return redis.error_reply('NOALIAS') end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], '*', 'action', 'alias_deleted', 'version', current,
           'alias', ARGV[1], 'previous', current, 'actor', ARGV[2], 'reason', ARGV[3],
           'time', ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[1] .. '=')
return current
"""

# KEYS: aliases hash, version hash, history stream;  ARGV: version, actor, reason, time
ARCHIVE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return redis.error_reply('NOVERSION') end
local aliases = redis.call('HGETALL', KEYS[1])
for i = 1, #aliases, 2 do
  if aliases[i + 1] == ARGV[1] then return redis.error_reply('ALIASED ' .. aliases[i]) end
end
redis.call('HSET', KEYS[2], 'status', 'archived')
redis.call('XADD', KEYS[3], '*', 'action', 'archived', 'version', ARGV[1], 'alias', '',
           'previous', '', 'actor', ARGV[2], 'reason', ARGV[3], 'time', ARGV[4])
return 1
"""

# KEYS: aliases hash, version hash, history stream
# ARGV: version, actor, reason, time, alias to release ('' for none), channel
# A registered version judged unfit after the fact (a challenger that lost in shadow):
# status ``rejected``, the alias released if it still points at it, one history entry.
REJECT = """
if redis.call('EXISTS', KEYS[2]) == 0 then return redis.error_reply('NOVERSION') end
if redis.call('HGET', KEYS[2], 'status') == 'rejected' then return 0 end
redis.call('HSET', KEYS[2], 'status', 'rejected')
local alias = ''
if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], ARGV[5]) == ARGV[1] then
  redis.call('HDEL', KEYS[1], ARGV[5])
  redis.call('PUBLISH', ARGV[6], ARGV[5] .. '=')
  alias = ARGV[5]
end
redis.call('XADD', KEYS[3], '*', 'action', 'rejected', 'version', ARGV[1], 'alias', alias,
           'previous', '', 'actor', ARGV[2], 'reason', ARGV[3], 'time', ARGV[4])
return 1
"""


def refusal(message: str, what: str) -> RegistryError:
    """The registry's error for a script's error reply (``NOVERSION`` ...)."""
    code, _, rest = message.partition(" ")
    return RegistryError({
        "NOVERSION": f"{what}: no such version",
        "ARCHIVED": f"{what}: the version is archived",
        "NOPREVIOUS": f"{what}: nothing to roll back to",
        "NOTEXPECTED": f"{what}: moved to v{rest} meanwhile; not rolled back",
        "NOALIAS": f"{what}: no such alias",
        "ALIASED": f"{what}: alias {rest!r} points at it; move the alias first",
    }.get(code, f"{what}: {message}"))
