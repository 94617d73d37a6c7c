using System.Collections.Concurrent;
using System.Diagnostics;
using LbAllocator.Speaker;
using LbAllocator.Speaker.Lan;

/// <summary>
/// Simulated speakers beside the real ones on one segment: each runs the product's own <see cref="Membership"/> with
/// its own name and MAC, on real time. What one sends to another simulated speaker is handed over in memory (on a real
/// switch such a unicast reaches only its destination, never the real nodes); what it sends to any other MAC, and every
/// broadcast, goes to <see cref="Wire"/>. What arrives from the wire (<see cref="FromWire"/>) is handed to the speaker
/// it is addressed to, a broadcast to all of them. As the speaker's transport does, beats are read in a batch when the
/// recipient ticks and everything else as it comes.
/// <para>
/// One thread does it all, so the memberships see no contention: the interval is cut into <see cref="Slots"/> slots and
/// each speaker ticks in its own, so their beats are spread over the interval as real nodes' are; between slots it
/// hands over what arrived. Joins are paced at <see cref="JoinRate"/> a second, as a DaemonSet rolls out.
/// </para>
/// </summary>
internal sealed class SimSegment : IDisposable
{
    public const int Slots = 20;

    private readonly Node[] _nodes;
    private readonly Dictionary<MacAddress, Node> _byMac = [];
    private readonly ConcurrentQueue<(LanMessage Message, MacAddress From, MacAddress To, long At)> _fromWire = new();
    private readonly Queue<(Node To, LanMessage Message, MacAddress From, long At)> _pending = new();
    private readonly TimeSpan _interval;
    private readonly TimeSpan _dead;
    private readonly ManualResetEventSlim _stop = new();
    private readonly Thread _thread;
    private volatile List<MembershipView>? _census; // a census under way: the views read so far
    private volatile string? _answer;
    private long _maxLag;
    private int _maxBacklog;
    private int _started;
    private bool _stopping; // nobody left to hand anything to in memory

    public SimSegment(int members, string prefix, ulong firstMac, TimeSpan interval, TimeSpan dead, double joinRate)
    {
        _interval = interval;
        _dead = dead;
        JoinRate = joinRate;
        _nodes = [.. Enumerable.Range(0, members).Select(i => new Node(this, $"{prefix}-{i:D4}", new MacAddress(firstMac + (ulong)i), i % Slots))];
        foreach (var node in _nodes)
        {
            _byMac[node.Mac] = node;
        }

        _thread = new Thread(Run) { IsBackground = true, Name = "lan-sim" };
    }

    public double JoinRate { get; }

    /// <summary>Sends a message on the wire from a simulated speaker's MAC; called on the simulation thread.</summary>
    public Action<LanMessage, MacAddress, MacAddress>? Wire { get; set; }

    // Tallies, read by other threads (torn reads of a counter are harmless here).
    public long MemoryUnicast;          // sim-to-sim unicast messages handed over in memory
    public long MemoryBroadcastCopies;  // broadcasts handed to each other simulated speaker in memory
    public long WireSent;               // messages sent on the wire (to a real node, or broadcast)
    public long WireSentBroadcast;
    public long WireReceived;           // messages from the wire handed to a simulated speaker (a broadcast once)
    public long SlotsLate;              // slots that began more than one slot late
    public long Rejoins;                // new epochs of speakers that had one (left and asked to join again)

    /// <summary>Time spent in the memberships (Stopwatch ticks): [0] their ticks, [kind] receiving messages of that kind.</summary>
    public readonly long[] Cost = new long[8];

    /// <summary>Sim-to-sim unicast messages handed over in memory, by kind.</summary>
    public readonly long[] MemoryByKind = new long[8];

    public string KindsText() => string.Join(' ', Enum.GetValues<LanKind>().Select(k => $"{k}={MemoryByKind[(int)k]}"));

    /// <summary>Messages the memberships received, by kind ([0]: their ticks).</summary>
    public readonly long[] Calls = new long[8];

    /// <summary>"Tick=MS (µs each)" and the same per kind received: where the simulation's time goes.</summary>
    public string CostText() => string.Join(' ', Enumerable.Range(0, 7).Select(k =>
        $"{(k == 0 ? "Tick" : ((LanKind)k).ToString())}={Cost[k] * 1000.0 / Stopwatch.Frequency:F0}ms/{Calls[k]}={(Calls[k] == 0 ? 0 : Cost[k] * 1e6 / Stopwatch.Frequency / Calls[k]):F1}us"));

    public int Count => _nodes.Length;

    public bool IsSimulated(MacAddress mac) => _byMac.ContainsKey(mac);

    public void Start() => _thread.Start();

    public void Stop()
    {
        _stop.Set();
        _thread.Join();
    }

    public void Dispose() => _stop.Dispose();

    /// <summary>A message read off the wire (any thread): to a simulated speaker, or broadcast.</summary>
    public void FromWire(LanMessage message, MacAddress from, MacAddress to)
    {
        if (to == MacAddress.Broadcast || _byMac.ContainsKey(to))
        {
            _fromWire.Enqueue((message, from, to, Stopwatch.GetTimestamp()));
        }
    }

    /// <summary>
    /// "members JOINED/TOTAL view MIN-MAX": how many have joined and the smallest and largest view among them. Counted
    /// on the simulation thread a few speakers a slot: reading a membership's view costs a set of its alive members.
    /// </summary>
    public string Census(TimeSpan timeout)
    {
        _answer = null;
        _census = [];
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (_answer is null && Stopwatch.GetTimestamp() < deadline)
        {
            Thread.Sleep(5);
        }

        return _answer ?? "census timed out";
    }

    /// <summary>The longest a slot began late since the last call, in ms.</summary>
    public double TakeMaxLag() => Interlocked.Exchange(ref _maxLag, 0) * 1000.0 / Stopwatch.Frequency;

    /// <summary>The most messages waiting to be handed over since the last call.</summary>
    public int TakeMaxBacklog() => Interlocked.Exchange(ref _maxBacklog, 0);

    private void Run()
    {
        var slot = TimeSpan.FromTicks(_interval.Ticks / Slots);
        var began = Stopwatch.GetTimestamp();
        var next = began;
        var slotTicks = (long)(slot.TotalSeconds * Stopwatch.Frequency);
        var index = 0;
        while (!_stop.IsSet)
        {
            var now = Stopwatch.GetTimestamp();
            var lag = now - next;
            if (lag > slotTicks)
            {
                SlotsLate++;
            }

            if (lag > Volatile.Read(ref _maxLag))
            {
                Volatile.Write(ref _maxLag, lag);
            }

            StartDue(Stopwatch.GetElapsedTime(began, now));
            // Ticks first: a speaker that does not tick looks dead to its neighbours, while a message handed over a
            // little late is only a slower network. The rest of the slot hands over what waits.
            foreach (var node in _nodes.AsSpan(0, _started))
            {
                if (node.Slot == index)
                {
                    node.Tick();
                }
            }

            CensusStep();
            index = (index + 1) % Slots;
            next += slotTicks;
            while (!_stop.IsSet && next - Stopwatch.GetTimestamp() is var left && left > 0)
            {
                if (!HandOver(next))
                {
                    // Whole milliseconds at most 1 (a wait of -1 ms is forever).
                    _stop.Wait(left * 1000 >= Stopwatch.Frequency ? 1 : 0);
                }
            }

            if (Stopwatch.GetTimestamp() - next > slotTicks * Slots)
            {
                next = Stopwatch.GetTimestamp(); // more than an interval behind: do not try to catch up
            }
        }

        // They leave as a SIGTERMed speaker does (a Leave broadcast each): the real nodes drop them at once.
        _stopping = true;
        foreach (var node in _nodes.AsSpan(0, _started))
        {
            node.Membership.Stop();
        }
    }

    /// <summary>Reads the views of up to 50 speakers; once all are read, answers the census.</summary>
    private void CensusStep()
    {
        if (_census is not { } views)
        {
            return;
        }

        foreach (var node in _nodes.AsSpan(views.Count, Math.Min(50, _started - views.Count)))
        {
            views.Add(node.Membership.View());
        }

        if (views.Count < _started)
        {
            return;
        }

        _census = null;
        var members = views.Where(v => v.State == MemberState.Member).ToList();
        var sizes = members.Select(v => v.Alive.Count).DefaultIfEmpty(0).ToList();
        var why = views.Where(v => v.State != MemberState.Member).GroupBy(v => v.Why).Select(g => $"{g.Count()}x {g.Key}").FirstOrDefault();
        _answer = $"members {members.Count}/{_nodes.Length} view {sizes.Min()}-{sizes.Max()}{(why is null ? "" : $"; not members: {why}")}";
    }

    private void StartDue(TimeSpan elapsed)
    {
        var due = JoinRate <= 0 ? _nodes.Length : (int)Math.Min(_nodes.Length, 1 + (elapsed.TotalSeconds * JoinRate));
        while (_started < due)
        {
            _nodes[_started++].Membership.Start();
        }
    }

    /// <summary>
    /// Hands over what came from the wire and what the simulated speakers sent each other, until none is left or
    /// <paramref name="until"/>; false when there was nothing to hand over.
    /// </summary>
    private bool HandOver(long until)
    {
        var any = false;
        while (_fromWire.TryDequeue(out var arrived))
        {
            any = true;
            WireReceived++;
            if (arrived.To == MacAddress.Broadcast)
            {
                foreach (var node in _nodes.AsSpan(0, _started))
                {
                    node.Arrive(arrived.Message, arrived.From, arrived.At);
                }
            }
            else
            {
                _byMac[arrived.To].Arrive(arrived.Message, arrived.From, arrived.At);
            }
        }

        if (_pending.Count > _maxBacklog)
        {
            _maxBacklog = _pending.Count;
        }

        for (var i = 0; _pending.TryDequeue(out var message); i++)
        {
            any = true;
            var start = Stopwatch.GetTimestamp();
            message.To.Membership.Receive(message.Message, message.From, message.At);
            Cost[(int)message.Message.Kind] += Stopwatch.GetTimestamp() - start;
            Calls[(int)message.Message.Kind]++;
            if (start > until)
            {
                break;
            }
        }

        return any;
    }

    private void Route(Node from, LanMessage message, MacAddress to)
    {
        var at = Stopwatch.GetTimestamp();
        if (to == MacAddress.Broadcast)
        {
            WireSent++;
            WireSentBroadcast++;
            Wire?.Invoke(message, from.Mac, to);
            foreach (var node in _nodes.AsSpan(0, _stopping ? 0 : _started))
            {
                if (node != from)
                {
                    MemoryBroadcastCopies++;
                    node.Arrive(message, from.Mac, at);
                }
            }
        }
        else if (_byMac.TryGetValue(to, out var node))
        {
            MemoryUnicast++;
            MemoryByKind[(int)message.Kind]++;
            node.Arrive(message, from.Mac, at);
        }
        else
        {
            WireSent++;
            Wire?.Invoke(message, from.Mac, to);
        }
    }

    private sealed class Node : ILanSender
    {
        private readonly SimSegment _segment;
        private readonly List<(LanMessage Message, MacAddress From, long At)> _beats = [];
        private ulong _epoch;

        public Node(SimSegment segment, string name, MacAddress mac, int slot)
        {
            _segment = segment;
            Mac = mac;
            Slot = slot;
            Membership = new Membership(name, segment._interval, segment._dead, TimeProvider.System) { Sender = this };
        }

        public MacAddress Mac { get; }

        public int Slot { get; }

        public Membership Membership { get; }

        public void Send(LanMessage message, MacAddress destination) => _segment.Route(this, message, destination);

        public void Arrive(LanMessage message, MacAddress from, long at)
        {
            if (message is Beat)
            {
                _beats.Add((message, from, at));
            }
            else
            {
                _segment._pending.Enqueue((this, message, from, at));
            }
        }

        public void Tick()
        {
            var start = Stopwatch.GetTimestamp();
            foreach (var (message, from, at) in _beats)
            {
                Membership.Receive(message, from, at);
            }

            var read = Stopwatch.GetTimestamp();
            _segment.Cost[(int)LanKind.Beat] += read - start;
            _segment.Calls[(int)LanKind.Beat] += _beats.Count;
            _beats.Clear();
            Membership.Tick();
            if (Membership.Epoch != _epoch)
            {
                _segment.Rejoins += _epoch == 0 ? 0 : 1;
                _epoch = Membership.Epoch;
            }

            // A view costs a set of every alive member: read only when the gate is shut (not a member in good standing).
            if (Stopwatch.GetTimestamp() >= Membership.GateOpenUntil && Membership.View() is { AloneCheckDue: true })
            {
                // The API's answer: the real nodes renew their leases, so no simulated speaker is ever alone.
                Membership.AloneChecked(alone: false);
            }

            _segment.Cost[0] += Stopwatch.GetTimestamp() - read;
            _segment.Calls[0]++;
        }
    }
}
