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


# A detached --fetch's file whose object was in cold storage: its worker counted it
# failed (a batch's rows are counted where they are run), but it is not done, only
# waiting for its object's restore (``dmp_cli.runs.restoring``), and a later batch counts
# it again. The count is taken back as the row leaves the job's stream: once, with the
# checkpoint that says the row was used (a coordinator that takes over reads the rows
# after the checkpoint again). A cold row is the one object with a "cold" key (its path,
# a JSON string, cannot hold that text unescaped).
_UNCOUNT = """
local function uncount(job, rows, id)
  local found = redis.call('XRANGE', rows, id, id)
  if #found == 0 then return end
  local fields = found[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'r' then
      local _, cold = string.gsub(fields[i + 1], '"cold":"', '')
      if cold > 0 then
        redis.call('HINCRBY', job, 'files', -cold)
        if tonumber(redis.call('HINCRBY', job, 's:failed', -cold)) <= 0 then
          redis.call('HDEL', job, 's:failed')
        end
      end
    end
  end
end
"""

# A coordinator's checkpoint: only while it holds the lease, and the job is still there
# and going. The batches it has gathered leave the flight record and the row stream (a
# --fetch's cold rows uncounted as they go, if ARGV[3] is 1).
CHECKPOINT = (
    _UNCOUNT
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'active' then return -2 end
redis.call('HSET', KEYS[1], 'checkpoint', ARGV[2])
local cold = ARGV[3] == '1'
local ids = tonumber(ARGV[4])
for i = 5, 4 + ids do
  if cold then uncount(KEYS[1], KEYS[3], ARGV[i]) end
  redis.call('XDEL', KEYS[3], ARGV[i])
end
for i = 5 + ids, #ARGV do redis.call('HDEL', KEYS[4], ARGV[i]) end
redis.call('EXPIRE', KEYS[1], {JOB_TTL})
return 1
"""
)

# The rows a coordinator that died left on the stream of a job waiting for restores
# (their batches' files settled by the coordinator that reads them): gone, their cold
# rows uncounted, while that coordinator holds the lease.
DROP_ROWS = (
    _UNCOUNT
    + """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV do
  uncount(KEYS[1], KEYS[2], ARGV[i])
  redis.call('XDEL', KEYS[2], ARGV[i])
end
return 1
"""
)

# A job waiting for restores, parked by its coordinator (which holds the lease): its
# fields, when to look again (the sorted set of parked jobs, by time), every key of the
# job kept for another JOB_TTL, and the lease let go, so that no worker holds it meanwhile.
PARK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'active' then return -2 end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'parked', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
for i = 4, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
redis.call('DEL', KEYS[2])
return 1
"""

# The parked jobs due by ARGV[1] (ARGV[2] at most), taken out of the set by one caller,
# which sends each a coordinator; the claim a watchdog makes before it sends a job whose
# coordinator died is made too (ARGV[3] ms), so that none sends a second meanwhile.
UNPARK = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, job in ipairs(due) do
  redis.call('ZREM', KEYS[1], job)
  redis.call('HDEL', ARGV[4] .. job, 'parked')
  redis.call('SET', ARGV[4] .. job .. ':restart', 1, 'PX', ARGV[3])
end
return due
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
# totals and how it ended (a cancelled job stays cancelled); what it kept while it waited
# for restores goes (KEYS[8] on), and so does its place among the parked jobs.
END_JOB = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if redis.call('HGET', KEYS[1], 'state') == 'active' then
  redis.call('HSET', KEYS[1], 'state', 'done')
end
redis.call('HSETNX', KEYS[1], 'finished', ARGV[2])
redis.call('HDEL', KEYS[1], 'parked')
redis.call('DEL', KEYS[3], KEYS[4], KEYS[2])
redis.call('SREM', KEYS[5], KEYS[6])
redis.call('ZREM', KEYS[7], KEYS[6])
for i = 8, #KEYS do redis.call('DEL', KEYS[i]) end
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
