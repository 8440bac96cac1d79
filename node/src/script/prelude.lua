-- Run once when the interpreter is created, before any script: builds the
-- `redis` API on top of the runtime table `rt` (which only Rust fills), and
-- then locks the environment scripts see. Redis 7.0 does the locking with its
-- patched Lua's read-only tables; stock Lua 5.1 has none, so scripts get
-- read-only *proxies*: an empty table whose metatable reads through to the
-- real table and refuses writes, with `rawset`, `setmetatable`, `loadstring`
-- and `load` wrapped so that they cannot reach the real tables either.
-- `getfenv`, `setfenv` and `newproxy` are gone, as in Redis 7.0.15 as
-- Debian ships it (they let a script escape its environment).
local G, rt = ...

local raw_rawset, raw_rawget, raw_setfenv = rawset, rawget, setfenv
local raw_loadstring, raw_load, raw_pcall, raw_xpcall = loadstring, load, pcall, xpcall
local raw_error, raw_type, raw_tostring, raw_select, raw_unpack = error, type, tostring, select, unpack
local raw_setmetatable, raw_getmetatable, raw_ipairs = setmetatable, getmetatable, ipairs

local readonly = raw_setmetatable({}, { __mode = 'k' })

-- Raised at the assignment's line, as the patched VM's own error; from
-- rawset (a C function in Redis) without a line.
local function refuse()
  raw_error('Attempt to modify a readonly table', 2)
end
local function refuse_raw()
  raw_error('Attempt to modify a readonly table', 0)
end

local function protect(t, on_missing)
  local index = t
  if on_missing then
    index = function(_, k)
      local v = t[k]
      if v == nil then on_missing(k) end
      return v
    end
  end
  local mt = { __index = index, __newindex = refuse }
  -- getmetatable shows the metatable, itself read-only (Redis' protected
  -- tables answer getmetatable too; assigning to what it returns fails).
  local shown = raw_setmetatable({}, { __index = mt, __newindex = refuse, __metatable = false })
  readonly[shown] = true
  mt.__metatable = shown
  local p = raw_setmetatable({}, mt)
  readonly[p] = true
  return p
end

local function pack(...)
  return { n = raw_select('#', ...), ... }
end

-- redis.call / redis.pcall: `rt.call` runs the command and returns its reply
-- converted to Lua, and whether that reply is an error (a table {err=...}).
local function redis_call(raise, ...)
  local call = rt.call
  if call == nil then
    raw_error({ err = 'ERR redis.call/pcall can only be called inside a script invocation' }, 0)
  end
  local reply, failed = call(...)
  if failed and raise then raw_error(reply, 0) end
  return reply
end

local redis = G.redis
redis.error_reply = function(...)
  if raw_select('#', ...) ~= 1 or raw_type((...)) ~= 'string' then
    return { err = 'ERR wrong number or type of arguments' }
  end
  -- Redis' luaPushErrorBuff: an optional leading '-', then the error code
  -- up to the first space (ERR when there is none), CR/LF trimmed.
  local s = ...
  if s:sub(1, 1) == '-' then s = s:sub(2) end
  local code, msg = 'ERR', s
  local sp = s:find(' ', 1, true)
  if sp then code, msg = s:sub(1, sp - 1), s:sub(sp + 1) end
  msg = (msg:gsub('^[\r\n]+', ''))
  msg = (msg:gsub('[\r\n]+$', ''))
  return { err = code .. ' ' .. msg }
end
redis.status_reply = function(...)
  if raw_select('#', ...) ~= 1 or raw_type((...)) ~= 'string' then
    return { err = 'ERR wrong number or type of arguments' }
  end
  return { ok = (...) }
end
-- No debugger: what Redis' breakpoint and debug do outside a debugging session.
redis.breakpoint = function() return false end
redis.debug = function() end
-- Effects are always replicated (as Redis 7.0, where this is a no-op).
redis.replicate_commands = function() return true end

-- The message handler of every script run: the error as {err=, source=,
-- line=}, where source and line are the script's own frame nearest the
-- error (Redis takes the frame that raised it, or its caller when that is a
-- C function: the same frame for everything a script can call).
-- An error raised by one of the Rust functions arrives as mlua's wrapper;
-- the value Redis would have raised is waiting in `rt.raised`.
local function raised(err)
  if raw_type(err) == 'userdata' then
    local v = rt.raised
    if v ~= nil then
      rt.raised = nil
      return v
    end
  end
  return err
end

rt.handler = function(err)
  err = raised(err)
  if rt.killed() then
    err = { err = 'ERR Script killed by user with SCRIPT KILL...' }
  elseif raw_type(err) ~= 'table' then
    err = { err = 'ERR ' .. rt.describe(err) }
  end
  local source, line = rt.where()
  if source then
    err.source = source
    err.line = line
  end
  return err
end
-- A script runs with no arguments (EVAL: KEYS and ARGV are globals); a
-- function (FCALL) gets its keys and arguments as two tables.
rt.run = function(f, ...)
  if raw_select('#', ...) == 0 then
    return raw_xpcall(f, rt.handler)
  end
  local keys, args = ...
  return raw_xpcall(function() return f(keys, args) end, rt.handler)
end

-- pcall returns a Redis error's message, not its table (Redis' own pcall,
-- kept for scripts written before 7.0); neither pcall nor xpcall can catch a
-- SCRIPT KILL.
pcall = function(...)
  local r = pack(raw_pcall(...))
  if not r[1] then
    local e = raised(r[2])
    if rt.killed() then raw_error(e, 0) end
    if raw_type(e) == 'table' then
      local msg = raw_rawget(e, 'err')
      if raw_type(msg) == 'string' or raw_type(msg) == 'number' then
        return false, msg
      end
    end
    return false, e
  end
  return raw_unpack(r, 1, r.n)
end
xpcall = function(f, h)
  local r = pack(raw_xpcall(f, function(e) return h(raised(e)) end))
  if not r[1] and rt.killed() then raw_error(r[2], 0) end
  return raw_unpack(r, 1, r.n)
end

local function missing(k)
  -- At the script's line: level 1 is this function, 2 the __index one.
  raw_error("Script attempted to access nonexistent global variable '" .. raw_tostring(k) .. "'", 3)
end

-- The environment scripts run in.
local env = protect(G, missing)

-- Functions (FUNCTION LOAD, FCALL). A library's code runs once, at load,
-- and sees only the library API: `redis.register_function`, `redis.log`
-- and the version. The functions it registers keep its environment, which
-- from then on reads through to everything scripts see. Redis does the same
-- by swapping the `__index` of its functions' globals around a load.
local lib_redis = {
  register_function = function(...)
    local register = rt.register
    if register == nil then
      raw_error({ err = 'ERR redis.register_function can only be called on FUNCTION LOAD command' }, 0)
    end
    return register(...)
  end,
  log = redis.log,
  REDIS_VERSION = redis.REDIS_VERSION,
  REDIS_VERSION_NUM = redis.REDIS_VERSION_NUM,
  LOG_DEBUG = redis.LOG_DEBUG,
  LOG_VERBOSE = redis.LOG_VERBOSE,
  LOG_NOTICE = redis.LOG_NOTICE,
  LOG_WARNING = redis.LOG_WARNING,
}
local lib_api = { redis = protect(lib_redis, missing) }
local loading = false
local fenv = raw_setmetatable({}, {
  __index = function(_, k)
    local v
    if loading then v = lib_api[k] else v = G[k] end
    if v == nil then missing(k) end
    return v
  end,
  __newindex = refuse,
  __metatable = false,
})
readonly[fenv] = true
rt.fenv = fenv
-- Run a library's code (compiled with `fenv`); its error as Redis reports a
-- load error: the raised value itself, with no position added.
rt.load_library = function(f)
  loading = true
  local r = pack(raw_pcall(f))
  loading = false
  if r[1] then return true end
  return false, raised(r[2])
end

rawset = function(t, k, v)
  if readonly[t] then refuse_raw() end
  return raw_rawset(t, k, v)
end
setmetatable = function(t, mt)
  if readonly[t] then refuse_raw() end
  return raw_setmetatable(t, mt)
end
-- Precompiled (binary) chunks are refused: Redis' Lua parses every chunk as
-- text (bytecode can break the VM's invariants), so for it they are a
-- syntax error.
local function binary(s)
  return raw_type(s) == 'string' and s:byte(1) == 27
end
local BINARY = 'binary chunks are not accepted'
loadstring = function(s, ...)
  if binary(s) then return nil, BINARY end
  local f, e = raw_loadstring(s, ...)
  if f then raw_setfenv(f, env) end
  return f, e
end
load = function(reader, ...)
  local first = true
  local guarded = function()
    local piece = reader()
    if first then
      first = false
      if binary(piece) then raw_error(BINARY, 0) end
    end
    return piece
  end
  local f, e = raw_load(raw_type(reader) == 'function' and guarded or reader, ...)
  if f then raw_setfenv(f, env) end
  return f, e
end

-- Not in Redis' sandbox.
print, dofile, loadfile, getfenv, setfenv, newproxy = nil, nil, nil, nil, nil, nil

-- Library tables are read-only too. Strings find their methods through the
-- read-only string table, and their metatable is hidden behind a proxy.
for _, name in raw_ipairs({ 'string', 'math', 'table', 'coroutine', 'redis', 'bit', 'cjson', 'cmsgpack', 'struct' }) do
  if raw_type(G[name]) == 'table' then
    G[name] = protect(G[name])
  end
end
local smt = raw_getmetatable('')
smt.__index = G.string
smt.__metatable = protect(smt)

G._G = env
return env
