"""How fast simulated time may run: limits the command line states without importing the
clock (and asyncio)."""

#: The shortest real time a device timeout (a silent oximeter's `device_lost`, a BP command
#: unanswered, a link's silence watchdog) is given on a sped-up clock. A pty round trip, the
#: event loop's turn and the machine's scheduling are real time: at 600x the 5 s `device_lost`
#: would be 8 ms, and a loaded 2-core machine stalls a process for 100-300 ms now and then.
#: Up to 10x nothing changes (5 s >= 0.5 s x 10); above, the timeouts stretch in session time
#: (60x: 30 s) and `sessiond demo` says so when it starts.
DEVICE_TIMEOUT_MIN_REAL_S = 0.5
#: The fastest `sessiond demo` runs (measured: see README, "The demo's speed").
MAX_DEMO_SPEED = 600.0
