using LbAllocator.Core;
using LbAllocator.Speaker.Lan;
using Microsoft.Extensions.Time.Testing;

namespace LbAllocator.Speaker.Tests;

/// <summary>
/// Speakers on a simulated segment, on a fake clock: each runs the real <see cref="Membership"/>, and every message
/// goes through the real codec (signed, then read back). As the speaker's transport does, a speaker reads the beats
/// addressed to it when it ticks and everything else the moment it arrives. A pass is modelled as the speaker does
/// it: each node answers the Services it wins among the speakers its view holds alive, while its gate is open; an
/// address taken from a speaker now dead is answered at once, any other after a probe that nobody answers (the holder
/// lets go when it sees the taker alive). Faults: crash, freeze, deaf (hears no speaker message), mute (none of its
/// messages go out), a link dropped one way. What the wire saw is tallied in 10 ms steps: Services answered twice,
/// and how long each went unanswered.
/// </summary>
internal sealed class LanSim
{
    public static readonly TimeSpan Step = TimeSpan.FromMilliseconds(10);
    public static readonly TimeSpan ProbeWindow = TimeSpan.FromMilliseconds(200);

    /// <summary>How long a crashed speaker's lease still looks renewed to the API (its lease duration).</summary>
    public static readonly TimeSpan LeaseDuration = TimeSpan.FromSeconds(20);

    private readonly Dictionary<MacAddress, Node> _byMac = [];
    private readonly byte[] _frame = new byte[LanFrames.MaxFrame];
    private readonly Dictionary<string, long> _silentSince = new(StringComparer.Ordinal);
    private int _macs;

    public LanSim(int services = 30, TimeSpan? interval = null, TimeSpan? dead = null)
    {
        Services = [.. Enumerable.Range(0, services).Select(i => $"default/svc-{i}")];
        Interval = interval ?? TimeSpan.FromMilliseconds(100);
        Dead = dead ?? TimeSpan.FromMilliseconds(500);
    }

    public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 12, 7, 12, 0, 0, TimeSpan.Zero));

    public LanKeys Keys { get; } = LanFramesTests.Cluster;

    public IReadOnlyList<string> Services { get; }

    public TimeSpan Interval { get; }

    public TimeSpan Dead { get; }

    public Dictionary<string, Node> Nodes { get; } = new(StringComparer.Ordinal);

    /// <summary>Drops speaker messages on a link (from, to) while it returns true.</summary>
    public Func<string, string, bool> Dropped { get; set; } = (_, _) => false;

    /// <summary>Every (Service, time) at which two or more nodes answered, one per 10 ms step.</summary>
    public List<(string Service, TimeSpan At, string[] By)> Doubles { get; } = [];

    /// <summary>Each silence that ended, per Service: how long nobody answered.</summary>
    public List<(string Service, TimeSpan Length, TimeSpan EndedAt)> Silences { get; } = [];

    public long Frames { get; private set; }

    /// <summary>Every change of a node's view and every fault, in order: for reading a failure.</summary>
    public List<string> Log { get; } = [];

    public TimeSpan Now => Time.GetUtcNow() - new DateTimeOffset(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);

    public Node Add(string name, TimeSpan? interval = null, TimeSpan? dead = null) => Add(name, interval ?? Interval, dead ?? Dead, membership: null);

    /// <summary>A node whose membership its owner made (a reconciler under test), which starts it and asks the API itself.</summary>
    public Node Add(string name, Membership membership) => Add(name, Interval, Dead, membership);

    private Node Add(string name, TimeSpan interval, TimeSpan dead, Membership? membership)
    {
        var node = new Node(this, name, new MacAddress(0x02_00_00_00_00_00UL + (ulong)++_macs), interval, dead, membership);
        Nodes[name] = node;
        _byMac[node.Mac] = node;
        if (membership is null)
        {
            node.Membership.Start();
        }

        return node;
    }

    public void Run(TimeSpan span)
    {
        for (var end = Now + span; Now < end;)
        {
            Time.Advance(Step);
            foreach (var node in Nodes.Values.Where(n => n.Running))
            {
                node.MaybeTick();
            }

            foreach (var node in Nodes.Values.Where(n => n.Running))
            {
                node.Pass();
                var view = node.Membership.View();
                if (view.Version != node.LoggedVersion)
                {
                    node.LoggedVersion = view.Version;
                    Log.Add($"{Now.TotalMilliseconds} {node.Name} {view.State} [{string.Join(",", view.Alive.Order())}] {view.Why}");
                }
            }

            Tally();
        }
    }

    /// <summary>Runs until every running node is a member with every other running node alive in its view.</summary>
    public void Settle(TimeSpan? within = null)
    {
        var deadline = Now + (within ?? TimeSpan.FromSeconds(10));
        while (!Settled())
        {
            Assert.True(Now < deadline, "not settled: " + string.Join("; ", Nodes.Values.Where(n => n.Running).Select(n => $"{n.Name} {n.Membership.View()}")));
            Run(Step);
        }
    }

    public bool Settled()
    {
        var running = Nodes.Values.Where(n => n.Running && !n.Deaf).Select(n => n.Name).ToHashSet(StringComparer.Ordinal);
        return Nodes.Values.Where(n => n.Running && !n.Deaf).All(n => n.Membership.View() is { State: MemberState.Member } view && view.Alive.SetEquals(running));
    }

    /// <summary>Each node's state, view and what it answers: for a failed assertion.</summary>
    public string Describe() => $"at {Now.TotalMilliseconds} ms:\n" + string.Join("\n", Nodes.Values.Select(Describe));

    private string Describe(Node n)
    {
        var faults = string.Concat(new[] { (n.Crashed, " crashed"), (n.Frozen, " frozen"), (n.Deaf, " deaf"), (n.Mute, " mute"), (n.Down, " down") }.Where(f => f.Item1).Select(f => f.Item2));
        var view = n.Membership.View();
        var gate = Time.GetTimestamp() < n.Membership.GateOpenUntil ? "open" : "closed";
        var answers = string.Join(",", n.Answered.Select(a => a.Replace("default/svc-", "", StringComparison.Ordinal)).Order());
        return $"  {n.Name}{faults}: {view.State} alive [{string.Join(",", view.Alive.Order())}] neighbours {view.Heard}/{view.Neighbors} {view.Why}; gate {gate}; answers {answers}";
    }

    /// <summary>Who wins a Service among the named nodes: the rendezvous hash the election uses.</summary>
    public static string? Winner(string service, IEnumerable<string> alive) =>
        alive.OrderByDescending(n => Election.Score(n, service)).ThenBy(n => n, StringComparer.Ordinal).FirstOrDefault();

    /// <summary>The nodes answering a Service on the wire now.</summary>
    public string[] Answering(string service) => [.. Nodes.Values.Where(n => n.OnWire(service)).Select(n => n.Name).Order()];

    /// <summary>The longest silence of a Service ending after <paramref name="since"/>, including one still going on.</summary>
    public TimeSpan LongestSilence(string service, TimeSpan since) =>
        Silences.Where(s => s.Service == service && s.EndedAt > since).Select(s => s.Length)
            .Append(_silentSince.TryGetValue(service, out var start) ? Now - TimeSpan.FromTicks(start) : TimeSpan.Zero).Max();

    internal void Send(Node from, LanMessage message, MacAddress to)
    {
        if (from.Mute || !from.Running)
        {
            return;
        }

        var length = LanFrames.Write(message, from.Mac, to, Keys, _frame);
        Frames++;
        var result = LanFrames.TryRead(_frame.AsSpan(0, length), Keys, out var read, out var source);
        Assert.True(result == LanRead.Ok, $"{message} read back {result}");
        // Delivering may make the recipients send (and reuse the frame buffer): the message was read back first.
        foreach (var node in to == MacAddress.Broadcast ? Nodes.Values.Where(n => n != from).ToList() : _byMac.TryGetValue(to, out var one) ? [one] : [])
        {
            if (!node.Crashed && !node.Deaf && !Dropped(from.Name, node.Name))
            {
                node.Arrive(read!, source);
            }
        }
    }

    private void Tally()
    {
        foreach (var service in Services)
        {
            var by = Answering(service);
            if (by.Length > 1)
            {
                if (Doubles.Count == 0)
                {
                    Log.Add($"{Now.TotalMilliseconds} FIRST DOUBLE {service} by {string.Join("+", by)}\n{Describe()}");
                }

                Doubles.Add((service, Now, by));
            }

            if (by.Length == 0)
            {
                _silentSince.TryAdd(service, Now.Ticks);
            }
            else if (_silentSince.Remove(service, out var start))
            {
                Silences.Add((service, Now - TimeSpan.FromTicks(start), Now));
            }
        }
    }

    public sealed class Node : ILanSender
    {
        private readonly LanSim _sim;
        private readonly List<(LanMessage Message, MacAddress From, long At)> _beats = [];
        private readonly List<(LanMessage Message, MacAddress From, long At)> _held = []; // arrived while frozen
        private readonly Dictionary<string, string?> _lastOwner = new(StringComparer.Ordinal);
        private readonly Dictionary<string, TimeSpan> _probing = new(StringComparer.Ordinal);
        private TimeSpan _nextTick;
        private ulong _passEpoch;

        public Node(LanSim sim, string name, MacAddress mac, TimeSpan interval, TimeSpan dead, Membership? membership)
        {
            _sim = sim;
            Name = name;
            Mac = mac;
            Interval = interval;
            DeadInterval = dead;
            Owned = membership is not null;
            Membership = membership ?? new Membership(name, interval, dead, sim.Time);
            Membership.Sender = this;
            // Nodes do not beat in step: each its own phase within the interval.
            _nextTick = sim.Now + TimeSpan.FromMilliseconds(10 * (sim.Nodes.Count % Math.Max(1, (int)(interval / Step))));
        }

        public string Name { get; }

        public MacAddress Mac { get; }

        public TimeSpan Interval { get; }

        public TimeSpan DeadInterval { get; }

        public Membership Membership { get; private set; }

        public HashSet<string> Answered { get; } = new(StringComparer.Ordinal);

        public bool Crashed { get; private set; }

        public bool Frozen { get; set; }

        public bool Deaf { get; set; }

        public bool Mute { get; set; }

        /// <summary>Link down: nothing in or out, and nothing answered (the speaker sees its interface down).</summary>
        public bool Down
        {
            get;
            set
            {
                field = value;
                Membership.SetServing(!value);
            }
        }

        public bool Running => !Crashed && !Frozen;

        /// <summary>Its membership belongs to a reconciler under test, which asks the API whether it is alone.</summary>
        public bool Owned { get; }

        internal long LoggedVersion { get; set; } = -1;

        /// <summary>Received speaker frames per second since the node started, beats and the rest.</summary>
        public long Received { get; private set; }

        public void Send(LanMessage message, MacAddress destination)
        {
            if (!Down)
            {
                _sim.Send(this, message, destination);
            }
        }

        public void Crash()
        {
            Crashed = true;
            CrashedAt = _sim.Now;
            Answered.Clear();
        }

        /// <summary>Whether the API still shows this speaker's lease renewed.</summary>
        public bool LeaseFresh => !Crashed || _sim.Now - CrashedAt < LeaseDuration;

        private TimeSpan CrashedAt { get; set; }

        /// <summary>SIGTERM: stops answering, then leaves.</summary>
        public void Terminate()
        {
            Answered.Clear();
            Membership.Stop();
            Crashed = true;
            CrashedAt = _sim.Now - LeaseDuration; // a stopping speaker deletes its lease
        }

        /// <summary>A new process: a new membership, nothing answered, nothing remembered.</summary>
        public void Restart()
        {
            Crashed = false;
            Frozen = false;
            Answered.Clear();
            _probing.Clear();
            _lastOwner.Clear();
            _beats.Clear();
            _held.Clear();
            Membership = new Membership(Name, Interval, DeadInterval, _sim.Time) { Sender = this };
            Membership.Start();
        }

        public void Thaw()
        {
            Frozen = false;
            foreach (var (message, from, at) in _held)
            {
                Deliver(message, from, at);
            }

            _held.Clear();
        }

        public bool OnWire(string service) =>
            Running && !Down && Answered.Contains(service) && _passEpoch == Membership.Epoch && _sim.Time.GetTimestamp() < Membership.GateOpenUntil;

        internal void Arrive(LanMessage message, MacAddress from)
        {
            if (Down)
            {
                return;
            }

            Received++;
            var at = _sim.Time.GetTimestamp();
            if (Frozen)
            {
                _held.Add((message, from, at));
            }
            else
            {
                Deliver(message, from, at);
            }
        }

        internal void MaybeTick()
        {
            if (_sim.Now < _nextTick)
            {
                return;
            }

            _nextTick += Interval;
            foreach (var (message, from, at) in _beats)
            {
                Membership.Receive(message, from, at);
            }

            _beats.Clear();
            Membership.Tick();
            if (!Owned && Membership.View() is { AloneCheckDue: true } view)
            {
                // The API: another speaker renews its lease while its process runs, and its lease outlives a crash.
                Membership.AloneChecked(!_sim.Nodes.Values.Any(n => n != this && n.LeaseFresh && !view.Left.Contains(n.Name)));
            }
        }

        /// <summary>The speaker's pass: win by the view, take from the dead at once and from the living after a quiet probe.</summary>
        internal void Pass()
        {
            var view = Membership.View();
            var now = _sim.Now;
            if (Membership.Epoch != _passEpoch)
            {
                // A new epoch (it rejoined): whatever it answered before, others may have taken meanwhile.
                _passEpoch = Membership.Epoch;
                Answered.Clear();
                _probing.Clear();
                _lastOwner.Clear();
            }

            foreach (var service in _sim.Services)
            {
                var owner = view.State == MemberState.Member ? Winner(service, view.Alive) : null;
                _lastOwner.TryGetValue(service, out var previous);
                _lastOwner[service] = owner;
                if (owner != Name || Down)
                {
                    Answered.Remove(service);
                    _probing.Remove(service);
                    continue;
                }

                if (Answered.Contains(service))
                {
                    continue;
                }

                if (previous is not null && previous != Name && !view.Alive.Contains(previous))
                {
                    Answered.Add(service); // its holder is dead: at once
                    _sim.Log.Add($"{now.TotalMilliseconds} {Name} takes {service} from dead {previous}");
                }
                else if (!_probing.TryGetValue(service, out var until))
                {
                    _probing[service] = now + ProbeWindow;
                }
                else if (_sim.Nodes.Values.Any(n => n != this && n.OnWire(service)))
                {
                    _probing[service] = now + ProbeWindow; // still answered by another: probe again
                }
                else if (now >= until)
                {
                    _probing.Remove(service);
                    Answered.Add(service);
                    _sim.Log.Add($"{now.TotalMilliseconds} {Name} takes {service} after a quiet probe");
                }
            }
        }

        private void Deliver(LanMessage message, MacAddress from, long at)
        {
            if (message is Beat)
            {
                _beats.Add((message, from, at)); // read in a batch at the next tick
            }
            else
            {
                Membership.Receive(message, from, at);
            }
        }
    }
}
