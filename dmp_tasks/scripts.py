"""The Lua scripts that update a job's state in Redis (``dmp_tasks.jobs`` runs them).

Every update that must happen once is a script: Redis runs it atomically, so a worker
killed halfway leaves either all of it or none. ``{JOB_TTL}`` in a script is the job's time
to live, put in by the store that registers it.
"""

# Finishing: when the submitter has said how many batches and chords there are, and
# either every batch has recorded itself or every chord's callback has run, the job is
# done (unless it was cancelled meanwhile). Every batch recorded means every count is in;
# a batch that could not record itself is counted as lost by its chord's callback.
_FINISH = """
local function finish(job, now)
  local function all(done, total)
    total = redis.call('HGET', job, total)
    return total and tonumber(total) == tonumber(redis.call('HGET', job, done) or '0')
  end
  if all('batches_done', 'batches_total') or all('windows_done', 'windows_total') then
    if redis.call('HGET', job, 'state') == 'active' then
      redis.call('HSET', job, 'state', 'done')
    end
    redis.call('HSETNX', job, 'finished', now)
  end
end
"""

# Checked first, marked last: if a write fails halfway (Redis out of memory), the batch
# is not marked, and its retry writes it again (the CLI drops a second copy of its rows).
RECORD_BATCH = (
    _FINISH
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('GETBIT', KEYS[2], ARGV[1]) == 1 then return 0 end
local ttl = tonumber(ARGV[4])
if ARGV[2] ~= '' then
  redis.call('XADD', KEYS[3], '*', 'b', ARGV[1], 'r', ARGV[2])
  redis.call('EXPIRE', KEYS[3], ttl)
end
for i = 7, #ARGV do
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'r', ARGV[i])
end
if #ARGV >= 7 then redis.call('EXPIRE', KEYS[4], ttl) end
for field, n in pairs(cjson.decode(ARGV[3])) do redis.call('HINCRBY', KEYS[1], field, n) end
redis.call('HINCRBY', KEYS[1], 'batches_done', 1)
finish(KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('SETBIT', KEYS[2], ARGV[1], 1)
redis.call('EXPIRE', KEYS[2], ttl)
return 1
"""
)

FINISH_WINDOW = (
    _FINISH
    + """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'windows_done', 1)
-- Files of batches that could not record themselves are counted here, so the job fails.
local lost = cjson.decode(ARGV[2])['s:lost']
if lost then redis.call('HINCRBY', KEYS[1], 's:lost', lost) end
finish(KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
return 1
"""
)

SET_TOTAL = (
    _FINISH
    + """
redis.call('HSET', KEYS[1], 'windows_total', ARGV[1], 'batches_total', ARGV[2],
           'items_total', ARGV[3])
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
finish(KEYS[1], ARGV[4])
return 1
"""
)


# A coordinator's checkpoint: only while it holds the lease, and the job is still there
# and going. The batches it has gathered leave the flight record and the row stream.
CHECKPOINT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'active' then return -2 end
redis.call('HSET', KEYS[1], 'checkpoint', ARGV[2])
local ids = tonumber(ARGV[3])
for i = 4, 3 + ids do redis.call('XDEL', KEYS[3], ARGV[i]) end
for i = 4 + ids, #ARGV do redis.call('HDEL', KEYS[4], ARGV[i]) end
redis.call('EXPIRE', KEYS[1], {JOB_TTL})
return 1
"""

RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# The end of a detached job, written by its coordinator while it holds the lease: its
# totals and how it ended (a cancelled job stays cancelled).
END_JOB = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if redis.call('HGET', KEYS[1], 'state') == 'active' then
  redis.call('HSET', KEYS[1], 'state', 'done')
end
redis.call('HSETNX', KEYS[1], 'finished', ARGV[2])
redis.call('DEL', KEYS[3], KEYS[4], KEYS[2])
redis.call('SREM', KEYS[5], KEYS[6])
return 1
"""

# A refusal of a job's work, kept with a job that is still there (never made again).
REFUSE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSETNX', KEYS[1], 'refused', ARGV[1])
end
"""

# An attached job whose submitter's lease has expired is abandoned: nobody reads its rows.
ABANDON = """
if redis.call('HGET', KEYS[1], 'state') ~= 'active' then
  redis.call('SREM', KEYS[3], ARGV[2])
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'abandoned', 'finished', ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
return 1
"""
