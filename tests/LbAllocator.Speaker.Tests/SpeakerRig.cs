using System.Diagnostics;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Hosting;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Speaker.Lan;
using Microsoft.Extensions.Logging.Abstractions;
using Prometheus;

namespace LbAllocator.Speaker.Tests;

/// <summary>
/// The speaker of node-a, whole (inputs, membership, election, plan, effects, verifier, readiness), in memory on a
/// fake clock: its objects come from <see cref="MemorySource{T}"/>s, its LAN is a <see cref="LanSim"/> segment where
/// other speakers run the real membership, and what it would do on the wire and to the API is recorded. Time moves
/// only in <see cref="RunAsync"/>, which waits after each step until no pass is queued or running.
/// </summary>
internal sealed class SpeakerRig : IAsyncDisposable
{
    public const string Self = "node-a";
    public const string Ns = "lballocator-system";

    private readonly CancellationTokenSource _stop = new();
    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    private Task _running = Task.CompletedTask;

    private SpeakerRig(SpeakerOptions options)
    {
        Options = options;
        Health = new Health(Lan.Time);
        Membership = new Membership(Self, options.HeartbeatInterval, options.DeadInterval, Lan.Time);
        var metrics = new SpeakerMetrics(Metrics.WithCustomRegistry(_registry), _registry, Answerer);
        var inputs = new SpeakerInputs(new SpeakerSources(Services.Source, Slices.Source, Nodes.Source, Pools.Source, Advertisements.Source, Statuses.Source), options, NullLogger.Instance);
        var effects = new SpeakerEffects(Answerer, Watch, Writer, metrics, options, Lan.Time, NullLogger<SpeakerEffects>.Instance);
        var verifier = new Verifier(Self, Watch, Captures, Writer, Lan.Time, NullLogger<Verifier>.Instance);
        var readiness = new SpeakerReadiness(options, Health, metrics, Writer, NullLogger<SpeakerReadiness>.Instance);
        Reconciler = new SpeakerReconciler(
            inputs, options, Membership, () => { }, Captures, effects, verifier, readiness, metrics,
            new SpeakerApi((_, _) => Task.FromResult(OthersRenewing), why => CannotAnswer = why),
            Health, Lan.Time, NullLogger<SpeakerReconciler>.Instance, heartbeatThread: false, scanInterfaces: () => [Eth0]);
        Watch.AddressClaimed += Reconciler.OnClaim;
    }

    public static readonly NetworkInterfaceInfo Eth0 = new("eth0", Up: true, Broadcast: true, Loopback: false, NoArp: false, Enslaved: false, Ethernet: true);

    public SpeakerOptions Options { get; }

    public LanSim Lan { get; } = new(services: 0);

    public MemorySource<V1Service> Services { get; } = new();

    public MemorySource<V1EndpointSlice> Slices { get; } = new();

    public MemorySource<V1Node> Nodes { get; } = new();

    public MemorySource<V1Alpha1IPAddressPool> Pools { get; } = new();

    public MemorySource<V1Alpha1L2Advertisement> Advertisements { get; } = new();

    public MemorySource<V1Alpha1ServiceL2Status> Statuses { get; } = new();

    public RecordingAnswerer Answerer { get; } = new();

    public RecordingWatch Watch { get; } = new();

    public FakeCaptures Captures { get; } = new();

    public RecordingStatusWriter Writer { get; } = new();

    public Health Health { get; }

    public Membership Membership { get; }

    public SpeakerReconciler Reconciler { get; }

    /// <summary>What the API says when node-a asks whether another speaker renews its lease.</summary>
    public bool OthersRenewing { get; set; }

    /// <summary>What node-a last told the API about where it cannot answer.</summary>
    public string? CannotAnswer { get; private set; } = "not told yet";

    public string Readiness => Health.Readiness().Text;

    /// <summary>
    /// node-a and the <paramref name="peers"/> (each a Node and a speaker on the segment), pool "main" (192.0.2.0/24)
    /// and an advertisement <paramref name="advertisement"/>; started, and run until every speaker is a member.
    /// </summary>
    public static async Task<SpeakerRig> StartAsync(string[] peers, Kubernetes.Crds.L2AdvertisementSpec? advertisement = null, SpeakerOptions? options = null)
    {
        var rig = new SpeakerRig(options ?? new SpeakerOptions { NodeName = Self, Namespace = Ns });
        foreach (var node in peers.Prepend(Self))
        {
            rig.Nodes.Put(new V1Node { Metadata = new V1ObjectMeta { Name = node, Labels = new Dictionary<string, string>() } });
        }

        rig.Pools.Put(new V1Alpha1IPAddressPool { Metadata = new V1ObjectMeta { Name = "main", NamespaceProperty = Ns }, Spec = new IPAddressPoolSpec { Addresses = ["192.0.2.0/24"] } });
        rig.Advertisements.Put(new V1Alpha1L2Advertisement { Metadata = new V1ObjectMeta { Name = "all", NamespaceProperty = Ns }, Spec = advertisement ?? new Kubernetes.Crds.L2AdvertisementSpec() });
        foreach (var peer in peers)
        {
            rig.Lan.Add(peer);
        }

        rig.Lan.Add(Self, rig.Membership);
        rig._running = rig.Reconciler.RunAsync(rig._stop.Token);
        await rig.UntilAsync(() => rig.Lan.Settled(), TimeSpan.FromSeconds(10), "the speakers have not joined each other");
        return rig;
    }

    public void AddService(string name, string ip, bool local = false, string pool = "main") => Services.Put(new V1Service
    {
        Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = "default", Annotations = new Dictionary<string, string> { [ServiceAnnotations.AllocatedFromPool] = pool } },
        Spec = new V1ServiceSpec { Type = "LoadBalancer", ExternalTrafficPolicy = local ? "Local" : "Cluster" },
        Status = new V1ServiceStatus { LoadBalancer = new V1LoadBalancerStatus { Ingress = [new V1LoadBalancerIngress { Ip = ip }] } },
    });

    /// <summary>Whether node-a answers the address on the wire now: owned, and the membership lets it answer.</summary>
    public bool Answers(string ip) => Answerer.Owned.ContainsKey(Ip.Parse(ip)) && Reconciler.MayAnswer();

    /// <summary>Moves the clock by <paramref name="span"/> in 10 ms steps, the segment ticking, each step's passes done before the next.</summary>
    public async Task RunAsync(TimeSpan span)
    {
        var end = Lan.Now + span;
        while (Lan.Now < end)
        {
            Lan.Run(LanSim.Step);
            await IdleAsync();
        }
    }

    /// <summary>Runs until the condition holds, at most <paramref name="within"/> of the fake clock.</summary>
    public async Task<TimeSpan> UntilAsync(Func<bool> condition, TimeSpan within, string what)
    {
        var start = Lan.Now;
        await IdleAsync();
        while (!condition())
        {
            Assert.True(Lan.Now - start < within, $"{what} within {within.TotalSeconds} s\n{Lan.Describe()}\n{Readiness}");
            await RunAsync(LanSim.Step);
        }

        return Lan.Now - start;
    }

    /// <summary>Waits (on the wall clock) until no pass is queued or running and the caches have taken in every change.</summary>
    public async Task IdleAsync()
    {
        // Twice in a row: a watch event on its way to a cache is not a queued pass yet.
        var waited = Stopwatch.StartNew();
        for (var quiet = 0; quiet < 2; quiet = Reconciler.Idle ? quiet + 1 : 0)
        {
            await Task.Delay(2);
            Assert.True(waited.Elapsed < TimeSpan.FromSeconds(10), "the speaker never went idle");
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _running.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        Reconciler.Dispose();
        _stop.Dispose();
    }
}
