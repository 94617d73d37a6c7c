using LbAllocator.Hosting;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Speaker;
using LbAllocator.Speaker.Capture;
using LbAllocator.Speaker.Lan;
using Microsoft.Extensions.Logging.Abstractions;
using Prometheus;

namespace LbAllocator.ApiRestartBench;

/// <summary>
/// One speaker's API side, built from the product's own classes as SpeakerHost wires them: its watches
/// (<see cref="SpeakerInputs"/> over <see cref="SpeakerSources.Of"/>), its node's <see cref="SpeakerLease"/> renewing,
/// and the <see cref="ClusterKey"/> reading the key Secret. No capture is ever opened: the LAN transport the key goes
/// to sends nothing, and nothing announces, so the status writer (which writes only on a change) stays idle.
/// </summary>
internal sealed class SimulatedSpeaker : IDisposable
{
    private readonly Captures _captures;
    private readonly Announcer _announcer;
    private readonly SpeakerLease _lease;
    private readonly ClusterKey _key;

    public SimulatedSpeaker(KubeApi api, string ns, string node)
    {
        var options = new SpeakerOptions { NodeName = node, Namespace = ns };
        var time = TimeProvider.System;
        var health = new Health(time);
        var registry = Metrics.NewCustomRegistry();
        _captures = new Captures(health, NullLogger<Captures>.Instance);
        _announcer = new Announcer(_captures, () => false);
        var metrics = new SpeakerMetrics(Metrics.WithCustomRegistry(registry), registry, _announcer);
        var membership = new Membership(node, options.HeartbeatInterval, options.DeadInterval, time);
        var transport = new LanTransport(_captures, membership, metrics, time, NullLogger<LanTransport>.Instance);
        _key = new ClusterKey(ClusterKey.From(api, ns), transport, health, time, NullLogger<ClusterKey>.Instance);
        _lease = new SpeakerLease(api, options, metrics, health, time, NullLogger<SpeakerLease>.Instance);
        Inputs = new SpeakerInputs(SpeakerSources.Of(api, ns, NullLogger.Instance), options, NullLogger.Instance);
    }

    public SpeakerInputs Inputs { get; }

    /// <summary>The watches, and with <paramref name="leaseAndKey"/> the lease renewal and the key reading too.</summary>
    public Task RunAsync(bool leaseAndKey, CancellationToken cancellationToken) => leaseAndKey
        ? Task.WhenAll(Inputs.RunAsync(cancellationToken), _lease.RunAsync(cancellationToken), _key.RunAsync(cancellationToken))
        : Inputs.RunAsync(cancellationToken);

    public void Dispose()
    {
        _announcer.Dispose();
        _captures.Dispose();
    }
}
