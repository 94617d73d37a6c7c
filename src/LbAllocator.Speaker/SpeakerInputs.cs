using k8s;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Kubernetes.Watching;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>Where the speaker's inputs come from: the API server's list-and-watch calls, or a test's objects in memory.</summary>
public sealed record SpeakerSources(
    ResourceSource<V1Service> Services,
    ResourceSource<V1EndpointSlice> EndpointSlices,
    ResourceSource<V1Node> Nodes,
    ResourceSource<V1Alpha1IPAddressPool> Pools,
    ResourceSource<V1Alpha1L2Advertisement> Advertisements,
    ResourceSource<V1Alpha1ServiceL2Status> Statuses)
{
    /// <summary>Nodes come from the controller's node digest (<see cref="NodeDigest"/>): one object, not every Node.</summary>
    public static SpeakerSources Of(KubeApi api, string ns, ILogger logger) => new(
        Sources.Services(api) with { Trim = SpeakerTrims.Service },
        Sources.EndpointSlices(api),
        new DigestNodes(Sources.NodeDigest(api, ns), logger).Source,
        Sources.Pools(api, ns),
        Sources.Advertisements(api, ns),
        Sources.ServiceL2Statuses(api, ns) with { Trim = SpeakerTrims.Status });
}

/// <summary>What changed since the last pass: the configuration (a new election), Services and Nodes.</summary>
public sealed record InputChanges(bool Config, IReadOnlyList<string> Services, IReadOnlyList<string> Nodes);

/// <summary>
/// The speaker's inputs, which every announcement mode reads (layer 2's election now, BGP's plan next): the watch
/// caches, what changed since the last pass, the EndpointSlices indexed by Service, and the objects mapped to the
/// plain data the decisions take. <see cref="Changed"/> says a pass is due; only changes that can change a decision
/// raise it (a pool's status write does not, a ServiceL2Status's condition write does not).
/// </summary>
public sealed class SpeakerInputs
{
    private const string ServiceNameLabel = "kubernetes.io/service-name";

    private readonly SpeakerOptions _options;
    private readonly ResourceCache<V1Service> _services;
    private readonly ResourceCache<V1EndpointSlice> _slices;
    private readonly ResourceCache<V1Node> _nodes;
    private readonly ResourceCache<V1Alpha1IPAddressPool> _pools;
    private readonly ResourceCache<V1Alpha1L2Advertisement> _ads;
    private readonly IWatchedCache[] _caches;
    private readonly ConfigSource _config;
    private readonly Lock _lock = new();
    private readonly HashSet<string> _changedServices = new(StringComparer.Ordinal);
    private readonly HashSet<string> _changedNodes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Dictionary<string, V1EndpointSlice>> _slicesByService = new(StringComparer.Ordinal);
    private bool _configChanged = true;

    public SpeakerInputs(SpeakerSources sources, SpeakerOptions options, ILogger logger)
    {
        _options = options;
        _services = new ResourceCache<V1Service>(sources.Services, logger);
        _slices = new ResourceCache<V1EndpointSlice>(sources.EndpointSlices, logger);
        _nodes = new ResourceCache<V1Node>(sources.Nodes, logger);
        _pools = new ResourceCache<V1Alpha1IPAddressPool>(sources.Pools, logger);
        _ads = new ResourceCache<V1Alpha1L2Advertisement>(sources.Advertisements, logger);
        Statuses = new ResourceCache<V1Alpha1ServiceL2Status>(sources.Statuses, logger);
        _caches = [_services, _slices, _nodes, _pools, _ads, Statuses];
        _config = new ConfigSource(_pools, _ads);

        _services.Changed += (old, now) => Mark(_changedServices, ObjectKey.Of((now ?? old)!));
        _nodes.Changed += (old, now) => Mark(_changedNodes, (now ?? old)!.Metadata.Name);
        _slices.Changed += OnSliceChanged;
        // Status writes by the controller (pool usage) do not change what is announced; specs and labels do.
        _pools.Changed += ConfigChanged;
        _ads.Changed += ConfigChanged;
        // A status naming a new owner or MACs (a takeover) changes what this node verifies; condition writes do not.
        Statuses.Changed += (old, now) =>
        {
            if (old?.Status?.Node != now?.Status?.Node
                || !(old?.Status?.Interfaces?.Select(i => (i.Name, i.Mac)) ?? []).SequenceEqual(now?.Status?.Interfaces?.Select(i => (i.Name, i.Mac)) ?? []))
            {
                Changed?.Invoke();
            }
        };
    }

    /// <summary>Something a pass reads changed.</summary>
    public event Action? Changed;

    /// <summary>The ServiceL2Statuses, which the status writer reads back before it writes.</summary>
    public ResourceCache<V1Alpha1ServiceL2Status> Statuses { get; }

    public bool HasAdvertisements => _ads.Items.Count > 0;

    /// <summary>The interfaces each advertisement names (none: every usable one).</summary>
    public IEnumerable<IReadOnlyList<string>> AdvertisedInterfaces => _ads.Items.Select(a => (IReadOnlyList<string>)(a.Spec?.Interfaces ?? []));

    public Task RunAsync(CancellationToken cancellationToken) => Task.WhenAll(_caches.Select(c => c.RunAsync(cancellationToken)));

    public Task WaitForSyncAsync(CancellationToken cancellationToken) => Task.WhenAll(_caches.Select(c => c.WaitForSyncAsync(cancellationToken)));

    /// <summary>Starts every watch afresh on a new connection (after the API path came back: a hung one may not resume for a minute).</summary>
    public void RestartWatches()
    {
        foreach (var cache in _caches)
        {
            cache.RestartWatch();
        }
    }

    /// <summary>What changed since the last call; the first call, and any after <see cref="Reset"/>, says the configuration did.</summary>
    public InputChanges TakeChanges()
    {
        lock (_lock)
        {
            var changes = new InputChanges(_configChanged, [.. _changedServices], [.. _changedNodes]);
            _configChanged = false;
            _changedServices.Clear();
            _changedNodes.Clear();
            return changes;
        }
    }

    /// <summary>The next pass starts from a full recompute (the last one failed).</summary>
    public void Reset()
    {
        lock (_lock)
        {
            _configChanged = true;
        }
    }

    /// <summary>A new election from everything the caches hold, for the live speakers named.</summary>
    public ElectionTable NewElection(IReadOnlySet<string> alive)
    {
        var config = _config.Build().Config;
        return ElectionTable.Build(config.Pools, config.Advertisements, _nodes.Items.Select(n => ToElectionNode(n, alive)), _services.Items.Select(ToAnnounced).OfType<AnnouncedService>());
    }

    /// <summary>Brings an election up to date for the Services and Nodes named (a live speaker that came or went is a changed node).</summary>
    public void Update(ElectionTable election, IEnumerable<string> services, IEnumerable<string> nodes, IReadOnlySet<string> alive)
    {
        foreach (var name in nodes.Distinct(StringComparer.Ordinal))
        {
            if (_nodes.TryGet(name, out var node))
            {
                election.SetNode(ToElectionNode(node!, alive));
            }
            else
            {
                election.RemoveNode(name);
            }
        }

        foreach (var key in services)
        {
            if (_services.TryGet(key, out var service) && ToAnnounced(service!) is { } announced)
            {
                election.SetService(announced);
            }
            else
            {
                election.RemoveService(key);
            }
        }
    }

    public V1Service? Service(string key) => _services.TryGet(key, out var service) ? service : null;

    public V1Node? Node(string name) => _nodes.TryGet(name, out var node) ? node : null;

    public IEnumerable<StatusView> StatusViews() => Statuses.Items.Select(s =>
        new StatusView(s.Metadata.Name, $"{s.Status?.ServiceNamespace}/{s.Status?.ServiceName}", s.Status?.Node));

    /// <summary>
    /// The Services this node checks (<see cref="Verifier"/>): announced by another live node that its status names with
    /// its MACs and the election agrees on, and for which this node ranks first among the others.
    /// </summary>
    public List<VerifyTarget> VerifyTargets(IReadOnlySet<string> alive, ElectionTable election)
    {
        var targets = new List<VerifyTarget>();
        var self = _options.NodeName;
        if (!alive.Contains(self))
        {
            return targets;
        }

        foreach (var status in Statuses.Items)
        {
            if (status.Status is not { Node: { } owner } s || owner == self || !alive.Contains(owner))
            {
                continue;
            }

            var key = $"{s.ServiceNamespace}/{s.ServiceName}";
            var macs = (s.Interfaces ?? []).Select(i => MacAddress.TryParse(i.Mac, out var mac) ? mac : (MacAddress?)null).OfType<MacAddress>().ToList();
            // A status an older speaker wrote has no MACs: nothing to check the answers against.
            if (macs.Count > 0 && election.Get(key) is { } decision && decision.Node == owner && Verifier.VerifierOf(key, owner, alive) == self)
            {
                targets.Add(new VerifyTarget(key, status.Metadata.Name, owner, decision.Addresses, macs));
            }
        }

        return targets;
    }

    private static ElectionNode ToElectionNode(V1Node node, IReadOnlySet<string> alive) => new(
        node.Metadata.Name,
        (IReadOnlyDictionary<string, string>?)node.Metadata.Labels?.AsReadOnly() ?? new Dictionary<string, string>(),
        alive.Contains(node.Metadata.Name),
        node.Status?.Conditions?.Any(c => c.Type == "NetworkUnavailable" && c.Status == "True") == true);

    /// <summary>The Service as the election sees it, or null when this speaker has nothing to announce for it.</summary>
    private AnnouncedService? ToAnnounced(V1Service service)
    {
        var info = ObjectMapper.ToServiceInfo(service, null);
        if (!info.IsLoadBalancerFor(_options.LoadBalancerClass) || info.IngressIps.Count == 0)
        {
            return null;
        }

        var local = info.TrafficPolicy == "Local";
        return new AnnouncedService(
            info.Key,
            info.IngressAddresses,
            info.Annotations.GetValueOrDefault(ServiceAnnotations.AllocatedFromPool),
            info.Labels,
            local,
            local ? LocalEndpoints.Nodes(EndpointsOf(info.Key)) : null);
    }

    private List<EndpointState> EndpointsOf(string service)
    {
        lock (_lock)
        {
            return _slicesByService.TryGetValue(service, out var slices) ? [.. slices.Values.SelectMany(ObjectMapper.ToEndpointStates)] : [];
        }
    }

    private void Mark(HashSet<string> set, string key)
    {
        lock (_lock)
        {
            set.Add(key);
        }

        Changed?.Invoke();
    }

    private void ConfigChanged(IKubernetesObject<V1ObjectMeta>? old, IKubernetesObject<V1ObjectMeta>? now)
    {
        if (!ObjectChange.SpecChanged(old, now) && ObjectChange.SameLabels(old?.Metadata.Labels, now?.Metadata.Labels))
        {
            return;
        }

        Reset();
        Changed?.Invoke();
    }

    /// <summary>Keeps the slices indexed by Service, and marks the Services they belong to as changed.</summary>
    private void OnSliceChanged(V1EndpointSlice? old, V1EndpointSlice? now)
    {
        lock (_lock)
        {
            foreach (var (slice, present) in new[] { (old, false), (now, true) })
            {
                if (slice?.Metadata.Labels?.TryGetValue(ServiceNameLabel, out var name) != true)
                {
                    continue;
                }

                var service = $"{slice.Metadata.NamespaceProperty}/{name}";
                if (!_slicesByService.TryGetValue(service, out var slices))
                {
                    _slicesByService[service] = slices = new(StringComparer.Ordinal);
                }

                if (present)
                {
                    slices[ObjectKey.Of(slice)] = slice;
                }
                else
                {
                    slices.Remove(ObjectKey.Of(slice));
                }

                if (slices.Count == 0)
                {
                    _slicesByService.Remove(service);
                }

                _changedServices.Add(service);
            }
        }

        Changed?.Invoke();
    }
}
