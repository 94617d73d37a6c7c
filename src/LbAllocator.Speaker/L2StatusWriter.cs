using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using k8s;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Kubernetes.Watching;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>What the speaker tells the API, handed over without waiting (the status writer does it on its own time).</summary>
public interface IStatusWriter
{
    /// <summary>Makes the plan's statuses the ones wanted (with their AddressConflict condition), its stale ones deleted.</summary>
    void Sync(SpeakerPlan plan, IReadOnlyDictionary<Ip, AddressConflict> conflicts, IReadOnlyDictionary<string, MacAddress> macs);

    /// <summary>The Verified condition this node, as verifier, wants on another node's ServiceL2Status.</summary>
    void SetVerified(string statusName, bool verified, string reason, string message);

    /// <summary>This node no longer verifies the status.</summary>
    void StopVerifying(string statusName);

    /// <summary>Queues an event on a Service (or this Node), sent once per topic.</summary>
    void Record(IKubernetesObject<V1ObjectMeta> target, PlannedEvent plannedEvent);

    /// <summary>Forgets the last event of one topic about a Service, so the same one is sent again when it next applies.</summary>
    void Forget(string serviceKey, string topic);

    /// <summary>Forgets the last events about a Service.</summary>
    void Forget(string serviceKey);
}

/// <summary>
/// Tells the API what the plan decided, off the decision path: ServiceL2Statuses through their own queue
/// (a few workers; every call bounded by ApiTimeout; a failed one retried with backoff) and events through
/// the <see cref="EventRecorder"/>'s. <see cref="Sync"/> and <see cref="Record"/> only hand work over, so a
/// slow or hung API server never delays a decision, the announcer or fencing.
/// </summary>
public sealed partial class L2StatusWriter : IStatusWriter, IDisposable
{
    private const int Workers = 4;
    private const int WriteAttempts = 3; // read-modify-write rounds lost to another writer before the queue's backoff
    private const string VerifiedItem = "verified:"; // queue items for the Verified condition: status names hold no colon
    // An unchanged result is rewritten this often, for its check time. Each write is a watch event for every speaker and
    // the controller: once a minute made 1,000 VIPs 17 writes a second on an idle cluster (bench/RESULTS.md, issue 14).
    private static readonly TimeSpan VerifiedRefresh = TimeSpan.FromMinutes(10);
    private const string StatusServiceNameLabel = "lballocator.io/service-name";
    private const string StatusServiceNamespaceLabel = "lballocator.io/service-namespace";

    private readonly KubeApi _client;
    private readonly SpeakerOptions _options;
    private readonly ResourceCache<V1Alpha1ServiceL2Status> _statuses;
    private readonly TimeProvider _time;
    private readonly ILogger<L2StatusWriter> _logger;
    private readonly EventRecorder _events;
    private readonly WorkQueue<string> _queue;
    private readonly Lock _lock = new();

    private Dictionary<string, Desired> _desired = new(StringComparer.Ordinal);
    private readonly Dictionary<string, OwnCondition> _verified = new(StringComparer.Ordinal); // status name: the Verified condition wanted
    private readonly Dictionary<string, (OwnCondition Condition, long At)> _verifiedWritten = new(StringComparer.Ordinal);

    public L2StatusWriter(KubeApi client, SpeakerOptions options, ResourceCache<V1Alpha1ServiceL2Status> statuses, TimeProvider time, ILogger<L2StatusWriter> logger)
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
    /// <param name="macs">This node's interfaces with an open capture, and their MACs (published beside each interface).</param>
    public void Sync(SpeakerPlan plan, IReadOnlyDictionary<Ip, AddressConflict> conflicts, IReadOnlyDictionary<string, MacAddress> macs)
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
            var interfaces = ours.Interfaces.Select(i => new Interface(i, macs.TryGetValue(i, out var mac) ? mac.ToString() : null)).ToList();
            desired[StatusName(ns, name)] = new Write(ns, name, interfaces, ConflictCondition(ours.Addresses, conflicts));
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

    /// <summary>
    /// The Verified condition this node, as verifier, wants on another node's ServiceL2Status. This node and the check
    /// time go into the message; an unchanged result is written again only every ten minutes, for that time.
    /// </summary>
    public void SetVerified(string statusName, bool verified, string reason, string message)
    {
        var want = new OwnCondition(L2Conditions.Verified, verified ? "True" : "False", reason, message);
        lock (_lock)
        {
            _verified[statusName] = want;
            if (_verifiedWritten.TryGetValue(statusName, out var written) && written.Condition == want && _time.GetElapsedTime(written.At) < VerifiedRefresh)
            {
                return;
            }
        }

        _queue.Add(VerifiedItem + statusName);
    }

    /// <summary>This node no longer verifies the status (another node does, or it is gone).</summary>
    public void StopVerifying(string statusName)
    {
        lock (_lock)
        {
            _verified.Remove(statusName);
            _verifiedWritten.Remove(statusName);
        }
    }

    /// <summary>Queues an event on a Service (or this Node); sent once (EventRecorder), each write bounded by ApiTimeout.</summary>
    public void Record(IKubernetesObject<V1ObjectMeta> target, PlannedEvent plannedEvent) =>
        _events.Post(target, EventKey(plannedEvent.ServiceKey, plannedEvent.Topic), plannedEvent.Type, plannedEvent.Reason, plannedEvent.Message);

    /// <summary>Forgets the last event of one topic about a Service, so the same one is sent again when it next applies.</summary>
    public void Forget(string serviceKey, string topic) => _events.Forget(EventKey(serviceKey, topic));

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
        if (name.StartsWith(VerifiedItem, StringComparison.Ordinal))
        {
            await WriteVerifiedItemAsync(name[VerifiedItem.Length..], cancellationToken);
            return;
        }

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

    private async Task WriteVerifiedItemAsync(string name, CancellationToken cancellationToken)
    {
        OwnCondition? want;
        lock (_lock)
        {
            want = _verified.GetValueOrDefault(name);
        }

        if (want is null)
        {
            return;
        }

        using var timeout = new CancellationTokenSource(_options.ApiTimeout, _time);
        using var call = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        await WriteVerifiedAsync(name, want with { Message = $"{want.Message}; last checked {_time.GetUtcNow():yyyy-MM-ddTHH:mm:ssZ} by node {_options.NodeName}" }, call.Token);
        lock (_lock)
        {
            if (_verified.ContainsKey(name))
            {
                _verifiedWritten[name] = (want, _time.GetTimestamp());
            }
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
                && current.ServiceNamespace == w.Namespace && (current.Interfaces?.Select(i => new Interface(i.Name ?? "", i.Mac)) ?? []).SequenceEqual(w.Interfaces)
                && current.Conditions?.FirstOrDefault(c => c.Type == w.Conflict.Type) is { } c && w.Conflict.Matches(c),
            _ => false,
        };
    }

    /// <summary>Writes this node's status for a Service it announces: node, names, interfaces, its AddressConflict condition.</summary>
    private Task WriteAsync(string name, Write want, CancellationToken cancellationToken) =>
        UpdateAsync(name, want, old => new ServiceL2StatusStatus
        {
            Node = _options.NodeName,
            ServiceName = want.Name,
            ServiceNamespace = want.Namespace,
            Interfaces = [.. want.Interfaces.Select(i => new InterfaceInfo { Name = i.Name, Mac = i.Mac })],
            Conditions = L2Conditions.Set(old?.Conditions, want.Conflict.ToCondition(_time.GetUtcNow().UtcDateTime)),
        }, cancellationToken);

    /// <summary>Writes the Verified condition into another node's status, leaving the rest as its owner wrote it.</summary>
    private Task WriteVerifiedAsync(string name, OwnCondition verified, CancellationToken cancellationToken) =>
        UpdateAsync(name, create: null, old => old is null ? null : new ServiceL2StatusStatus
        {
            Node = old.Node,
            ServiceName = old.ServiceName,
            ServiceNamespace = old.ServiceNamespace,
            Interfaces = old.Interfaces,
            Conditions = L2Conditions.Set(old.Conditions, verified.ToCondition(_time.GetUtcNow().UtcDateTime)),
        }, cancellationToken);

    /// <summary>
    /// Read-modify-write on the status subresource, the resourceVersion as precondition: a JSON merge patch would
    /// replace the whole conditions list, and two nodes write conditions into it (the owner AddressConflict, a
    /// verifier Verified). A 409 means the other writer came first: read again and keep what it wrote.
    /// </summary>
    /// <param name="create">What to create the object for when it does not exist; null: leave it missing.</param>
    /// <param name="change">The new status from the current one; null: nothing to write.</param>
    private async Task UpdateAsync(string name, Write? create, Func<ServiceL2StatusStatus?, ServiceL2StatusStatus?> change, CancellationToken cancellationToken)
    {
        _statuses.TryGet($"{_options.Namespace}/{name}", out var current);
        for (var attempt = 1; ; attempt++)
        {
            if (current is null && create is not null)
            {
                current = await CreateAsync(name, create, cancellationToken);
            }

            if (current is null || change(current.Status) is not { } status)
            {
                return;
            }

            var body = new V1Alpha1ServiceL2Status
            {
                Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = _options.Namespace, ResourceVersion = current.Metadata.ResourceVersion },
                Status = status,
            };
            try
            {
                await _client.ReplaceAsync(KubeResources.ServiceL2Statuses, _options.Namespace, name, body, "status", cancellationToken);
                return;
            }
            catch (KubeApiException e) when (e.StatusCode == HttpStatusCode.Conflict && attempt < WriteAttempts)
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
            return await _client.CreateAsync(KubeResources.ServiceL2Statuses, _options.Namespace, body, cancellationToken);
        }
        catch (KubeApiException e) when (e.StatusCode == HttpStatusCode.Conflict)
        {
            // Created meanwhile (by us before a restart, or a previous owner).
            return await GetAsync(name, cancellationToken) ?? throw new InvalidOperationException($"ServiceL2Status {name} exists and does not: created and deleted meanwhile");
        }
    }

    private async Task<V1Alpha1ServiceL2Status?> GetAsync(string name, CancellationToken cancellationToken)
    {
        try
        {
            return await _client.GetAsync(KubeResources.ServiceL2Statuses, _options.Namespace, name, cancellationToken: cancellationToken);
        }
        catch (KubeApiException e) when (e.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    private async Task DeleteAsync(string name, CancellationToken cancellationToken)
    {
        try
        {
            await _client.DeleteAsync(KubeResources.ServiceL2Statuses, _options.Namespace, name, cancellationToken);
        }
        catch (KubeApiException e) when (e.StatusCode == HttpStatusCode.NotFound)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not write ServiceL2Status {Status}; retrying in {Delay}")]
    private partial void LogStatusFailed(Exception exception, string status, TimeSpan delay);

    /// <summary>What a ServiceL2Status should be.</summary>
    private abstract record Desired;

    /// <summary>Naming this node, for the Service, with the interfaces it answers on and the condition this node owns.</summary>
    private sealed record Write(string Namespace, string Name, IReadOnlyList<Interface> Interfaces, OwnCondition Conflict) : Desired;

    private readonly record struct Interface(string Name, string? Mac);

    /// <summary>A condition this writer owns, without its transition time (kept from the status while the status does not flip).</summary>
    private sealed record OwnCondition(string Type, string Status, string Reason, string Message)
    {
        public bool Matches(V1Condition condition) => condition.Status == Status && condition.Reason == Reason && condition.Message == Message;

        public V1Condition ToCondition(DateTime now) => new() { Type = Type, Status = Status, Reason = Reason, Message = Message, LastTransitionTime = now };
    }

    /// <summary>Gone.</summary>
    private sealed record Delete : Desired;
}
