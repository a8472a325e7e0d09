-- The task states of app/core/lifecycle.py (tests/unit/test_lua_scripts.py keeps them equal).
local NO_RECORD = '-'
local PENDING = 'pending'
local RUNNING = 'running'
local SUCCEEDED = 'succeeded'
local FAILED = 'failed'
local CANCELLED = 'cancelled'
local EXPIRED = 'expired'
local FINAL = {[SUCCEEDED] = true, [FAILED] = true, [CANCELLED] = true, [EXPIRED] = true}
-- Error code of a task that was not started before its deadline.
local ERROR_DEADLINE = 'deadline_exceeded'
