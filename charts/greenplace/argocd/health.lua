-- Argo CD health of greenplace's objects (GpuPool, PlacementPolicy, SignalSource, Budget,
-- EnergyReport), read from the status the operator writes. The same script serves all five
-- kinds: add it to argocd-cm as resource.customizations.health.greenplace.dev_<Kind>.
-- Lua 5.1, as Argo CD runs it (gopher-lua); tested on real objects (tests/integration/
-- signals/test_advertised.py).
--   Progressing: no status yet, no Ready condition, or Ready older than the spec
--                (its observedGeneration below metadata.generation).
--   Degraded:    Ready False (e.g. a policy no pool passes, a pool without nodes, a source
--                without a value, a report refused), or Degraded / Exceeded True (a signal
--                answered by a fallback, a report whose Prometheus is unreachable, a Budget
--                over a limit).
--   Healthy:     Ready True and nothing above.
local hs = {status = "Progressing", message = "waiting for greenplace to report its status"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local found = {}
for _, condition in ipairs(obj.status.conditions) do
  found[condition.type] = condition
end
local ready = found["Ready"]
if ready == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.message = "greenplace has not yet seen generation " .. generation
  return hs
end
local function says(condition)
  return (condition.reason or "") .. ": " .. (condition.message or "")
end
if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = says(ready)
  return hs
end
for _, kind in ipairs({"Degraded", "Exceeded"}) do
  local condition = found[kind]
  if condition ~= nil and condition.status == "True" then
    hs.status = "Degraded"
    hs.message = says(condition)
    return hs
  end
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = says(ready)
  return hs
end
hs.message = "Ready is " .. tostring(ready.status) .. ": " .. says(ready)
return hs
