using System.Net;
using System.Security.Cryptography;
using System.Text;
using k8s;
using k8s.Autorest;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Kubernetes.Watching;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>
/// Tells the API what the plan decided, off the decision path: ServiceL2Statuses through their own queue
/// (a few workers; every call bounded by ApiTimeout; a failed one retried with backoff) and events through
/// the <see cref="EventRecorder"/>'s. <see cref="Sync"/> and <see cref="Record"/> only hand work over, so a
/// slow or hung API server never delays a decision, the announcer or fencing.
/// </summary>
public sealed partial class L2StatusWriter : IDisposable
{
    private const int Workers = 4;
    private const int WriteAttempts = 3; // read-modify-write rounds lost to another writer before the queue's backoff
    private const string Plural = "servicel2statuses";
    private const string StatusServiceNameLabel = "lballocator.io/service-name";
    private const string StatusServiceNamespaceLabel = "lballocator.io/service-namespace";

    private readonly IKubernetes _client;
    private readonly SpeakerOptions _options;
    private readonly ResourceCache<V1Alpha1ServiceL2Status> _statuses;
    private readonly TimeProvider _time;
    private readonly ILogger<L2StatusWriter> _logger;
    private readonly EventRecorder _events;
    private readonly WorkQueue<string> _queue;
    private readonly Lock _lock = new();

    private Dictionary<string, Desired> _desired = new(StringComparer.Ordinal);

    public L2StatusWriter(IKubernetes client, SpeakerOptions options, ResourceCache<V1Alpha1ServiceL2Status> statuses, TimeProvider time, ILogger<L2StatusWriter> logger)
    {
        _client = client;
        _options = options;
        _statuses = statuses;
        _time = time;
        _logger = logger;
        // While the API hangs, old events give way to new ones rather than piling up.
        _events = new EventRecorder(client, "speaker", options.NodeName, options.Namespace, new EventQueueSettings(Capacity: 1024, DropOldest: true, AttemptTimeout: options.ApiTimeout), time, logger);
        _queue = new WorkQueue<string>(TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(30), time);
    }

    /// <summary>The ServiceL2Status for a Service: one per Service, named after it.</summary>
    public static string StatusName(string ns, string name)
    {
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{ns}/{name}")), 0, 4);
        return $"{ns}-{name}-{hash}";
    }

    /// <summary>
    /// Makes the plan's statuses the ones wanted: its Services' written (with their AddressConflict condition from
    /// <paramref name="conflicts"/>), its stale ones deleted. Work for statuses the plan no longer mentions is
    /// dropped, so a slow queue never writes an outdated owner.
    /// </summary>
    public void Sync(SpeakerPlan plan, IReadOnlyDictionary<Ip, AddressConflict> conflicts)
    {
        var desired = new Dictionary<string, Desired>(StringComparer.Ordinal);
        foreach (var name in plan.StaleStatuses)
        {
            desired[name] = new Delete();
        }

        foreach (var (key, ours) in plan.Announced)
        {
            var slash = key.IndexOf('/', StringComparison.Ordinal);
            var (ns, name) = (key[..slash], key[(slash + 1)..]);
            desired[StatusName(ns, name)] = new Write(ns, name, ours.Interfaces, ConflictCondition(ours.Addresses, conflicts));
        }

        lock (_lock)
        {
            _desired = desired;
        }

        foreach (var (name, want) in desired)
        {
            if (!Satisfied(name, want))
            {
                _queue.Add(name);
            }
        }
    }

    /// <summary>Queues an event on a Service (or this Node); sent once (EventRecorder), each write bounded by ApiTimeout.</summary>
    public void Record(IKubernetesObject<V1ObjectMeta> target, PlannedEvent plannedEvent) =>
        _events.Post(target, EventKey(plannedEvent.ServiceKey, plannedEvent.Topic), plannedEvent.Type, plannedEvent.Reason, plannedEvent.Message);

    /// <summary>Forgets the last events about a Service, so the same ones are sent again when they next apply.</summary>
    public void Forget(string serviceKey)
    {
        _events.Forget(EventKey(serviceKey, PlannedEvent.AnnounceTopic));
        _events.Forget(EventKey(serviceKey, PlannedEvent.ConflictTopic));
    }

    public Task RunAsync(CancellationToken cancellationToken) =>
        Task.WhenAll([.. Enumerable.Range(0, Workers).Select(_ => WriteStatusesAsync(cancellationToken)), _events.SendQueuedAsync(1, static () => false, cancellationToken)]);

    public void Dispose() => _queue.Dispose();

    private static string EventKey(string serviceKey, string topic) => $"{serviceKey}/{topic}";

    /// <summary>The AddressConflict condition for a Service's addresses (the message names each claimed one and who claims it).</summary>
    private static OwnCondition ConflictCondition(IReadOnlyList<Ip> addresses, IReadOnlyDictionary<Ip, AddressConflict> conflicts)
    {
        var claimed = addresses.Where(conflicts.ContainsKey).ToList();
        return claimed.Count == 0
            ? new OwnCondition(L2Conditions.AddressConflict, "False", "NoConflict", $"no other host claims {string.Join(", ", addresses)}")
            : new OwnCondition(L2Conditions.AddressConflict, "True", "AddressInUse", string.Join("; ", claimed.Select(ip => $"{ip} is in use by {conflicts[ip].Claimant}")) + ", a host that is not a speaker: not announced; probed again with backoff");
    }

    private Task WriteStatusesAsync(CancellationToken cancellationToken) =>
        _queue.ProcessAsync(WriteStatusAsync, (name, e, delay) => LogStatusFailed(e, name, delay), cancellationToken);

    /// <summary>Brings one ServiceL2Status in line with what is wanted now (work for an outdated want is dropped).</summary>
    private async Task WriteStatusAsync(string name, CancellationToken cancellationToken)
    {
        Desired? want;
        lock (_lock)
        {
            want = _desired.GetValueOrDefault(name);
        }

        if (want is not null && !Satisfied(name, want))
        {
            using var timeout = new CancellationTokenSource(_options.ApiTimeout, _time);
            using var call = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            await (want is Write write ? WriteAsync(name, write, call.Token) : DeleteAsync(name, call.Token));
        }
    }

    /// <summary>Whether the status as last seen already is what is wanted.</summary>
    private bool Satisfied(string name, Desired want)
    {
        _statuses.TryGet($"{_options.Namespace}/{name}", out var existing);
        return want switch
        {
            Delete => existing is null,
            Write w => existing?.Status is { } current && current.Node == _options.NodeName && current.ServiceName == w.Name
                && current.ServiceNamespace == w.Namespace && (current.Interfaces?.Select(i => i.Name) ?? []).SequenceEqual(w.Interfaces)
                && current.Conditions?.FirstOrDefault(c => c.Type == w.Conflict.Type) is { } c && w.Conflict.Matches(c),
            _ => false,
        };
    }

    /// <summary>
    /// Read-modify-write on the status subresource, the resourceVersion as precondition: a JSON merge patch would
    /// replace the whole conditions list, and another node's speaker writes conditions of its own into it. A 409 means
    /// the other writer came first: read again and keep what it wrote.
    /// </summary>
    private async Task WriteAsync(string name, Write want, CancellationToken cancellationToken)
    {
        _statuses.TryGet($"{_options.Namespace}/{name}", out var current);
        for (var attempt = 1; ; attempt++)
        {
            current ??= await CreateAsync(name, want, cancellationToken);
            var status = new ServiceL2StatusStatus
            {
                Node = _options.NodeName,
                ServiceName = want.Name,
                ServiceNamespace = want.Namespace,
                Interfaces = [.. want.Interfaces.Select(i => new InterfaceInfo { Name = i })],
                Conditions = L2Conditions.Set(current.Status?.Conditions, want.Conflict.ToCondition(_time.GetUtcNow().UtcDateTime)),
            };
            var body = new V1Alpha1ServiceL2Status
            {
                Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = _options.Namespace, ResourceVersion = current.Metadata.ResourceVersion },
                Status = status,
            };
            try
            {
                await _client.CustomObjects.ReplaceNamespacedCustomObjectStatusAsync(body, Api.Group, Api.Version, _options.Namespace, Plural, name, cancellationToken: cancellationToken);
                return;
            }
            catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Conflict && attempt < WriteAttempts)
            {
                current = await GetAsync(name, cancellationToken);
            }
        }
    }

    /// <summary>Creates the status object (without status: that takes the subresource), or reads it when it exists already.</summary>
    private async Task<V1Alpha1ServiceL2Status> CreateAsync(string name, Write want, CancellationToken cancellationToken)
    {
        var body = new V1Alpha1ServiceL2Status
        {
            Metadata = new V1ObjectMeta
            {
                Name = name,
                NamespaceProperty = _options.Namespace,
                Labels = new Dictionary<string, string> { [StatusServiceNameLabel] = want.Name, [StatusServiceNamespaceLabel] = want.Namespace },
            },
        };
        try
        {
            return Typed(await _client.CustomObjects.CreateNamespacedCustomObjectAsync(body, Api.Group, Api.Version, _options.Namespace, Plural, cancellationToken: cancellationToken));
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Conflict)
        {
            // Created meanwhile (by us before a restart, or a previous owner).
            return await GetAsync(name, cancellationToken) ?? throw new InvalidOperationException($"ServiceL2Status {name} exists and does not: created and deleted meanwhile");
        }
    }

    private async Task<V1Alpha1ServiceL2Status?> GetAsync(string name, CancellationToken cancellationToken)
    {
        try
        {
            return Typed(await _client.CustomObjects.GetNamespacedCustomObjectAsync(Api.Group, Api.Version, _options.Namespace, Plural, name, cancellationToken));
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    private static V1Alpha1ServiceL2Status Typed(object raw) => KubernetesJson.Deserialize<V1Alpha1ServiceL2Status>(KubernetesJson.Serialize(raw));

    private async Task DeleteAsync(string name, CancellationToken cancellationToken)
    {
        try
        {
            await _client.CustomObjects.DeleteNamespacedCustomObjectAsync(Api.Group, Api.Version, _options.Namespace, Plural, name, cancellationToken: cancellationToken);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not write ServiceL2Status {Status}; retrying in {Delay}")]
    private partial void LogStatusFailed(Exception exception, string status, TimeSpan delay);

    /// <summary>What a ServiceL2Status should be.</summary>
    private abstract record Desired;

    /// <summary>Naming this node, for the Service, with the interfaces it answers on and the condition this node owns.</summary>
    private sealed record Write(string Namespace, string Name, IReadOnlyList<string> Interfaces, OwnCondition Conflict) : Desired;

    /// <summary>A condition this writer owns, without its transition time (kept from the status while the status does not flip).</summary>
    private sealed record OwnCondition(string Type, string Status, string Reason, string Message)
    {
        public bool Matches(V1Condition condition) => condition.Status == Status && condition.Reason == Reason && condition.Message == Message;

        public V1Condition ToCondition(DateTime now) => new() { Type = Type, Status = Status, Reason = Reason, Message = Message, LastTransitionTime = now };
    }

    /// <summary>Gone.</summary>
    private sealed record Delete : Desired;
}
