using System.Net;
using System.Net.NetworkInformation;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using k8s;
using k8s.Autorest;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Hosting;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Kubernetes.Watching;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>
/// The speaker's loop: watch Services, EndpointSlices, Nodes, pools, advertisements and the speakers'
/// leases; on any change run the election for all Services (every speaker gets the same answer); announce
/// what this node won, and keep ServiceL2Status and events in line with it.
/// </summary>
public sealed partial class SpeakerReconciler : IDisposable
{
    private const string Everything = "all";
    private const string ServiceNameLabel = "kubernetes.io/service-name";
    private const string StatusServiceNameLabel = "lballocator.io/service-name";
    private const string StatusServiceNamespaceLabel = "lballocator.io/service-namespace";
    private const string CachesGate = "caches";

    private readonly IKubernetes _client;
    private readonly SpeakerOptions _options;
    private readonly SpeakerLease _lease;
    private readonly Announcer _announcer;
    private readonly TimeProvider _time;
    private readonly ILogger<SpeakerReconciler> _logger;
    private readonly EventRecorder _events;
    private readonly Regex _exclude;
    private readonly WorkQueue<string> _queue;
    private readonly ITimer _wake; // a pass when the next lease expires, though nothing changed
    private readonly ResourceCache<V1Service> _services;
    private readonly ResourceCache<V1EndpointSlice> _slices;
    private readonly ResourceCache<V1Node> _nodes;
    private readonly ResourceCache<V1Lease> _leases;
    private readonly ResourceCache<V1Alpha1IPAddressPool> _pools;
    private readonly ResourceCache<V1Alpha1L2Advertisement> _ads;
    private readonly ResourceCache<V1Alpha1ServiceL2Status> _statuses;

    private readonly SpeakerLiveness _liveness;
    private readonly SpeakerMetrics _metrics;
    private readonly Health _health;
    private HashSet<string> _announcedServices = new(StringComparer.Ordinal);
    private IReadOnlyList<NetworkInterfaceInfo> _interfaces = [];

    public SpeakerReconciler(
        IKubernetes client, SpeakerOptions options, SpeakerLease lease, Announcer announcer, SpeakerMetrics metrics, Health health, TimeProvider time, ILoggerFactory loggers)
    {
        _client = client;
        _metrics = metrics;
        _health = health;
        health.SetReady(CachesGate, false, "listing Services, EndpointSlices, Nodes, pools, advertisements, statuses and leases");
        _options = options;
        _lease = lease;
        _announcer = announcer;
        _time = time;
        _logger = loggers.CreateLogger<SpeakerReconciler>();
        _events = new EventRecorder(client, "speaker", options.NodeName, options.Namespace, _logger);
        _exclude = new Regex(options.ExcludeInterfaces);
        _queue = new WorkQueue<string>(TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(5), time);
        _wake = time.CreateTimer(_ => _queue.Add(Everything), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        var cacheLogger = loggers.CreateLogger("LbAllocator.Speaker.Watch");
        _services = Watch(Sources.Services(client));
        _slices = Watch(Sources.EndpointSlices(client));
        _nodes = Watch(Sources.Nodes(client));
        _pools = Watch(Sources.Pools(client, options.Namespace));
        _ads = Watch(Sources.Advertisements(client, options.Namespace));
        _statuses = new ResourceCache<V1Alpha1ServiceL2Status>(Sources.ServiceL2Statuses(client, options.Namespace), cacheLogger);
        _leases = new ResourceCache<V1Lease>(Sources.Leases(client, options.Namespace, SpeakerLease.LabelSelector), cacheLogger);
        _liveness = new SpeakerLiveness(options.NodeName, options.LeaseDuration, options.RenewInterval, time);
        // Only a speaker coming alive or leaving wakes a pass: a renewal of a live one changes no election
        // input, and expiries are picked up by the pass scheduled for them.
        _leases.Changed += (old, lease) =>
        {
            if (_liveness.Observe(old, lease))
            {
                _queue.Add(Everything);
            }
        };
        lease.HealthChanged += () => _queue.Add(Everything);

        ResourceCache<T> Watch<T>(ResourceSource<T> source) where T : class, IKubernetesObject<V1ObjectMeta>
        {
            var cache = new ResourceCache<T>(source, cacheLogger);
            cache.Changed += (_, _) => _queue.Add(Everything);
            return cache;
        }
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        NetworkChange.NetworkAddressChanged += OnNetworkChanged;
        NetworkChange.NetworkAvailabilityChanged += OnNetworkChanged;
        try
        {
            Task[] caches =
            [
                _services.RunAsync(cancellationToken), _slices.RunAsync(cancellationToken), _nodes.RunAsync(cancellationToken),
                _pools.RunAsync(cancellationToken), _ads.RunAsync(cancellationToken), _statuses.RunAsync(cancellationToken),
                _leases.RunAsync(cancellationToken),
            ];
            await Task.WhenAll(
                _services.WaitForSyncAsync(cancellationToken), _slices.WaitForSyncAsync(cancellationToken), _nodes.WaitForSyncAsync(cancellationToken),
                _pools.WaitForSyncAsync(cancellationToken), _ads.WaitForSyncAsync(cancellationToken), _statuses.WaitForSyncAsync(cancellationToken),
                _leases.WaitForSyncAsync(cancellationToken));
            LogSynced(_options.NodeName);
            _health.SetReady(CachesGate, true, "synced");
            _interfaces = NetworkInterfaces.Scan();
            _queue.Add(Everything);
            await Task.WhenAll([.. caches, WorkAsync(cancellationToken), RescanAsync(cancellationToken)]);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            NetworkChange.NetworkAddressChanged -= OnNetworkChanged;
            NetworkChange.NetworkAvailabilityChanged -= OnNetworkChanged;
        }
    }

    public void Dispose()
    {
        _wake.Dispose();
        _queue.Dispose();
    }

    private async Task WorkAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            var key = await _queue.TakeAsync(cancellationToken);
            try
            {
                var next = await ReconcileAsync(cancellationToken);
                _queue.Forget(key);
                // Each pass knows best when the next expiry is due, so it re-arms the one timer.
                _wake.Change(next ?? Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                LogReconcileFailed(e, _queue.AddRateLimited(key));
            }
            finally
            {
                _queue.Done(key);
            }
        }
    }

    private async Task RescanAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            await Task.Delay(_options.InterfaceRescanInterval, _time, cancellationToken);
            RescanInterfaces();
        }
    }

    private void OnNetworkChanged(object? sender, EventArgs e) => RescanInterfaces();

    private void RescanInterfaces()
    {
        var scanned = NetworkInterfaces.Scan();
        if (!scanned.SequenceEqual(_interfaces))
        {
            _interfaces = scanned;
            _queue.Add(Everything);
        }
    }

    /// <summary>One pass over everything; returns when the next pass is due without any change (a lease expiring).</summary>
    private async Task<TimeSpan?> ReconcileAsync(CancellationToken cancellationToken)
    {
        var (alive, nextExpiry) = LiveSpeakers();
        var nodes = _nodes.Items.Select(n => new ElectionNode(
            n.Metadata.Name,
            (IReadOnlyDictionary<string, string>?)n.Metadata.Labels?.AsReadOnly() ?? new Dictionary<string, string>(),
            alive.Contains(n.Metadata.Name),
            n.Status?.Conditions?.Any(c => c.Type == "NetworkUnavailable" && c.Status == "True") == true)).ToList();
        var services = new Dictionary<string, V1Service>(StringComparer.Ordinal);
        var announced = new List<AnnouncedService>();
        var readyNodes = ReadyNodesByService();
        foreach (var service in _services.Items)
        {
            var info = ObjectMapper.ToServiceInfo(service, null);
            if (info.IsLoadBalancerFor(_options.LoadBalancerClass) && info.IngressIps.Count > 0)
            {
                services[info.Key] = service;
                announced.Add(ToAnnounced(info, readyNodes));
            }
        }

        var config = ConfigValidator.Validate(
            [.. _pools.Items.Select(ObjectMapper.ToPoolSpec)],
            [.. _ads.Items.OrderBy(a => a.Metadata.Name, StringComparer.Ordinal).Select(ObjectMapper.ToAdvertisementSpec)]);
        var decisions = Election.Decide(announced, nodes, config.Pools, config.Advertisements);

        // What this node announces, on which interfaces.
        var owned = new Dictionary<Ip, string[]>();
        var mine = new Dictionary<string, (Announcement Decision, string[] Interfaces)>(StringComparer.Ordinal);
        foreach (var decision in decisions.Where(d => d.Node == _options.NodeName))
        {
            var interfaces = InterfacesFor(decision, out var why);
            var service = services[decision.ServiceKey];
            if (interfaces.Length == 0)
            {
                await _events.RecordAsync(service, $"{decision.ServiceKey}/announce", "Warning", "AnnounceFailed",
                    $"node {_options.NodeName} won the election for {Join(decision.Addresses)} but cannot announce it: {why}", cancellationToken);
                continue;
            }

            mine[decision.ServiceKey] = (decision, interfaces);
            foreach (var ip in decision.Addresses)
            {
                owned[ip] = interfaces;
            }
        }

        var ownedBefore = _announcer.OwnedAddresses;
        foreach (var (ip, name) in _announcer.SetOwned(owned))
        {
            LogTakingOver(ip, name);
            _ = AnnounceGratuitouslyAsync(ip, name, cancellationToken);
        }

        var ownedNow = _announcer.OwnedAddresses;
        _metrics.OwnershipChanged(acquired: ownedNow.Except(ownedBefore).Count(), released: ownedBefore.Except(ownedNow).Count());

        var previous = _announcedServices;
        _announcedServices = [.. mine.Keys];
        foreach (var (key, (decision, interfaces)) in mine)
        {
            var service = services[key];
            if (!previous.Contains(key))
            {
                var addresses = Join(decision.Addresses);
                var on = string.Join(", ", interfaces);
                LogAnnouncing(key, addresses, on);
                await _events.RecordAsync(service, $"{key}/announce", "Normal", "nodeAssigned",
                    $"announcing {addresses} from node {_options.NodeName} ({on})", cancellationToken);
            }

            await WriteStatusAsync(service, interfaces, cancellationToken);
        }

        foreach (var key in previous.Where(k => !mine.ContainsKey(k)))
        {
            LogStopped(key);
            _events.Forget($"{key}/announce");
        }

        await CleanUpStatusesAsync(decisions, services, alive, cancellationToken);

        var untilFenced = _lease.UntilUnhealthy;
        TimeSpan? next = nextExpiry;
        if (untilFenced > TimeSpan.Zero && (next is null || untilFenced < next))
        {
            next = untilFenced;
        }

        return next;
    }

    /// <summary>Nodes whose speaker is alive, and how long until the first of them expires.</summary>
    private (HashSet<string> Alive, TimeSpan? NextExpiry) LiveSpeakers()
    {
        var (alive, next) = _liveness.Others();
        _lease.CheckHealth();
        if (_lease.Healthy)
        {
            alive.Add(_options.NodeName);
        }

        return (alive, next);
    }

    private static AnnouncedService ToAnnounced(ServiceInfo service, Dictionary<string, HashSet<string>> readyNodes) => new(
        service.Key,
        service.IngressAddresses,
        service.Annotations.GetValueOrDefault(ServiceAnnotations.AllocatedFromPool),
        service.Labels,
        service.TrafficPolicy == "Local",
        readyNodes.GetValueOrDefault(service.Key));

    /// <summary>Service key to the nodes with a ready endpoint of it, from every EndpointSlice, built once per pass.</summary>
    private Dictionary<string, HashSet<string>> ReadyNodesByService()
    {
        var result = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var slice in _slices.Items)
        {
            if (slice.Metadata.Labels?.TryGetValue(ServiceNameLabel, out var name) != true)
            {
                continue;
            }

            var key = $"{slice.Metadata.NamespaceProperty}/{name}";
            // A missing ready condition means ready (the EndpointSlice API's rule).
            foreach (var endpoint in slice.Endpoints ?? [])
            {
                if (endpoint.Conditions?.Ready != false && !string.IsNullOrEmpty(endpoint.NodeName))
                {
                    (result.TryGetValue(key, out var nodes) ? nodes : result[key] = new HashSet<string>(StringComparer.Ordinal)).Add(endpoint.NodeName);
                }
            }
        }

        return result;
    }

    /// <summary>The interfaces to announce on: the advertisements' named ones, else every usable one.</summary>
    private string[] InterfacesFor(Announcement decision, out string why)
    {
        var interfaces = _interfaces;
        if (decision.Interfaces.Count == 0)
        {
            var usable = interfaces.Where(i => i.Unusable(_exclude) is null).Select(i => i.Name).ToArray();
            why = usable.Length > 0 ? "" : "no usable interface on this node ("
                + (interfaces.Count == 0 ? "none found" : string.Join(", ", interfaces.Select(i => $"{i.Name}: {i.Unusable(_exclude) ?? "usable"}"))) + ")";
            return usable;
        }

        var named = decision.Interfaces.Where(n => interfaces.Any(i => i.Name == n && i.CanCarryWhenNamed)).ToArray();
        why = named.Length > 0 ? "" : $"none of the interfaces its L2Advertisements name ({string.Join(", ", decision.Interfaces)}) is up and able to carry ARP/NDP on this node";
        return named;
    }

    private async Task AnnounceGratuitouslyAsync(Ip address, string interfaceName, CancellationToken cancellationToken)
    {
        try
        {
            for (var i = 0; i < _options.GratuitousCount && !cancellationToken.IsCancellationRequested; i++)
            {
                if (i > 0)
                {
                    await Task.Delay(_options.GratuitousInterval, _time, cancellationToken);
                }

                if (!_announcer.AnnounceGratuitously(address, interfaceName))
                {
                    return; // no longer ours there
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>The ServiceL2Status for a Service: one per Service, named after it.</summary>
    public static string StatusName(string ns, string name)
    {
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{ns}/{name}")), 0, 4);
        return $"{ns}-{name}-{hash}";
    }

    private async Task WriteStatusAsync(V1Service service, string[] interfaces, CancellationToken cancellationToken)
    {
        var ns = service.Metadata.NamespaceProperty;
        var name = StatusName(ns, service.Metadata.Name);
        var desired = new ServiceL2StatusStatus
        {
            Node = _options.NodeName,
            ServiceName = service.Metadata.Name,
            ServiceNamespace = ns,
            Interfaces = [.. interfaces.Select(i => new InterfaceInfo { Name = i })],
        };
        _statuses.TryGet($"{_options.Namespace}/{name}", out var existing);
        if (existing?.Status is { } current && current.Node == desired.Node && current.ServiceName == desired.ServiceName
            && current.ServiceNamespace == desired.ServiceNamespace
            && (current.Interfaces?.Select(i => i.Name) ?? []).SequenceEqual(interfaces))
        {
            return;
        }

        if (existing is null)
        {
            var body = new V1Alpha1ServiceL2Status
            {
                Metadata = new V1ObjectMeta
                {
                    Name = name,
                    NamespaceProperty = _options.Namespace,
                    Labels = new Dictionary<string, string> { [StatusServiceNameLabel] = service.Metadata.Name, [StatusServiceNamespaceLabel] = ns },
                },
            };
            try
            {
                await _client.CustomObjects.CreateNamespacedCustomObjectAsync(body, Api.Group, Api.Version, _options.Namespace, "servicel2statuses", cancellationToken: cancellationToken);
            }
            catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Conflict)
            {
                // Created meanwhile (by us before a restart, or a previous owner): patching the status below is enough.
            }
        }

        var patch = new V1Patch(KubernetesJson.Serialize(new { status = desired }), V1Patch.PatchType.MergePatch);
        await _client.CustomObjects.PatchNamespacedCustomObjectStatusAsync(patch, Api.Group, Api.Version, _options.Namespace, "servicel2statuses", name, cancellationToken: cancellationToken);
    }

    /// <summary>
    /// Deletes ServiceL2Statuses that are no longer true: this node's own, for Services it stopped announcing;
    /// and, done by one speaker only (the live one with the lowest name), those whose Service is gone or
    /// announced by nobody. The latter also gets a warning saying why nobody announces it.
    /// </summary>
    private async Task CleanUpStatusesAsync(IReadOnlyList<Announcement> decisions, Dictionary<string, V1Service> services, HashSet<string> alive, CancellationToken cancellationToken)
    {
        var byService = decisions.ToDictionary(d => d.ServiceKey, StringComparer.Ordinal);
        var janitor = _lease.Healthy && alive.Order(StringComparer.Ordinal).FirstOrDefault() == _options.NodeName;
        foreach (var status in _statuses.Items)
        {
            var key = $"{status.Status?.ServiceNamespace}/{status.Status?.ServiceName}";
            byService.TryGetValue(key, out var decision);
            var stale = status.Status?.Node == _options.NodeName ? decision?.Node != _options.NodeName : janitor && decision?.Node is null;
            if (stale)
            {
                await DeleteStatusAsync(status, cancellationToken);
            }
        }

        if (!janitor)
        {
            return;
        }

        foreach (var decision in decisions)
        {
            if (decision.Node is null)
            {
                await _events.RecordAsync(services[decision.ServiceKey], $"{decision.ServiceKey}/announce", "Warning", "NotAnnounced",
                    $"no node announces {Join(decision.Addresses)}: {decision.Reason}", cancellationToken);
            }
        }
    }

    private async Task DeleteStatusAsync(V1Alpha1ServiceL2Status status, CancellationToken cancellationToken)
    {
        try
        {
            await _client.CustomObjects.DeleteNamespacedCustomObjectAsync(Api.Group, Api.Version, _options.Namespace, "servicel2statuses", status.Metadata.Name, cancellationToken: cancellationToken);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
        }
    }

    private static string Join(IEnumerable<Ip> addresses) => string.Join(", ", addresses);

    [LoggerMessage(Level = LogLevel.Information, Message = "Speaker on {Node} has synced its caches")]
    private partial void LogSynced(string node);

    [LoggerMessage(Level = LogLevel.Information, Message = "Announcing {Service} ({Addresses}) on {Interfaces}")]
    private partial void LogAnnouncing(string service, string addresses, string interfaces);

    [LoggerMessage(Level = LogLevel.Information, Message = "No longer announcing {Service}")]
    private partial void LogStopped(string service);

    [LoggerMessage(Level = LogLevel.Information, Message = "Taking over {Address} on {Interface}: sending gratuitous announcements")]
    private partial void LogTakingOver(Ip address, string @interface);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Speaker pass failed; retrying in {Delay}")]
    private partial void LogReconcileFailed(Exception exception, TimeSpan delay);
}
