-- Names of the fair-share sets, as app/sharing/fair_share.py's FairShareKeys builds them.
local function fair_key(prefix, kind, model, owner)
  return prefix .. ':fair:' .. model .. ':' .. kind .. ':' .. owner
end
local function holders_key(prefix, model)
  return prefix .. ':fair:' .. model .. ':holders'
end
