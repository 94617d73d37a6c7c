using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Controller;

/// <summary>
/// The controller's side effects: a Service's status.loadBalancer.ingress and pool annotation, events on
/// Services and pools, and pool status. Writes only what differs; retries conflicts from a fresh read.
/// </summary>
internal sealed partial class StatusWriter(KubeApi client, ControllerOptions options, ControllerMetrics metrics, ILogger<StatusWriter> logger)
{
    private const int ConflictRetries = 5;

    /// <summary>Event writes in flight at most: a burst's events trail its addresses instead of competing with them.</summary>
    private const int EventSenders = 2;

    /// <summary>A burst of 4,096 Services is told in full; a write waits 5 s at most.</summary>
    private static readonly EventQueueSettings EventQueue = new(Capacity: 4096, DropOldest: false, AttemptTimeout: TimeSpan.FromSeconds(5));

    private readonly EventRecorder _events = new(client, "controller", options.Identity, options.Namespace, EventQueue, TimeProvider.System, logger);

    /// <summary>The writer's queued events, sent off the reconcile path, yielding while <paramref name="busy"/>; runs while leading.</summary>
    public Task SendEventsAsync(Func<bool> busy, CancellationToken cancellationToken) => _events.SendQueuedAsync(EventSenders, busy, cancellationToken);

    /// <summary>Once the workers and the senders stopped: what was not sent is counted in the log, not kept for a later term.</summary>
    public void DiscardQueuedEvents() => _events.DiscardQueued();

    /// <summary>
    /// The object is gone: forget what it was told, so memory does not grow with deleted objects and one
    /// created again under the same name hears its own trouble.
    /// </summary>
    public void ForgetEvents(string key) => _events.Forget(key);

    /// <summary>
    /// Brings the Service in line with the allocator's outcome. The address comes first, in one write that
    /// carries the pool annotation too; the events describing it are queued, not waited for.
    /// </summary>
    public async Task ApplyAsync(V1Service service, AllocationOutcome outcome, CancellationToken cancellationToken)
    {
        // A Service we do not manage is left alone; one that stopped being ours loses what we gave it (Released).
        // One whose namespace is not known yet is left as it is until it is judged.
        if (outcome is AllocationOutcome.NotOurs or AllocationOutcome.AwaitingNamespace)
        {
            return;
        }

        var key = outcome.Key;
        var held = ObjectMapper.IngressIps(service);
        var desired = outcome.Ips.Select(ip => ip.ToString()).ToList();

        // A server without ingress.ipMode (before 1.29) drops it: absent is as good as VIP there, and
        // rewriting it would be a write per pass that changes nothing.
        var ingressCurrent = held.SequenceEqual(desired) && (service.Status?.LoadBalancer?.Ingress ?? []).All(i => i.IpMode is null or "VIP");
        if (!ingressCurrent || PoolAnnotation(service) != outcome.Pool)
        {
            var written = await WriteIngressAsync(service, desired, outcome.Pool, cancellationToken);

            // kube-apiserver keeps metadata written through a Service's status; a server that takes only
            // the status there (as for custom resources) gets the annotation in a patch of its own.
            if (PoolAnnotation(written) != outcome.Pool)
            {
                // Built as a JSON tree: serializing an anonymous type needs reflection, which NativeAOT lacks.
                var patch = new JsonObject { ["metadata"] = new JsonObject { ["annotations"] = new JsonObject { [ServiceAnnotations.AllocatedFromPool] = outcome.Pool } } }.ToJsonString();
                await client.PatchAsync(KubeResources.Services, service.Metadata.NamespaceProperty, service.Metadata.Name, patch, cancellationToken: cancellationToken);
            }
        }

        var released = held.Except(desired).ToList();
        if (released.Count > 0)
        {
            metrics.Released(released.Count);
            _events.Post(service, key, "Normal", "IPReleased", $"Released {string.Join(", ", released)}");
        }

        // The failure metric counts by the event's reason, so a count leads straight to the events.
        switch (outcome)
        {
            case AllocationOutcome.KeptInvalid invalid:
                metrics.Failed("InvalidAnnotation");
                _events.Post(service, key, "Warning", "InvalidAnnotation", desired.Count > 0 ? $"{invalid.Reason}; keeping {string.Join(", ", desired)}" : invalid.Reason);
                break;
            case AllocationOutcome.Pending pending:
                metrics.Failed("AllocationFailed");
                _events.Post(service, key, "Warning", "AllocationFailed", pending.Reason);
                break;
            case AllocationOutcome.Assigned assigned:
                if (!held.SequenceEqual(desired))
                {
                    metrics.Allocated(assigned.FromPool);
                    _events.Post(service, key, "Normal", "IPAllocated", $"Assigned {string.Join(", ", desired)} from pool \"{assigned.FromPool}\"");
                }

                _events.Forget(key);
                break;
            case AllocationOutcome.Released:
                _events.Forget(key);
                break;
        }
    }

    private static string? PoolAnnotation(V1Service service) =>
        service.Metadata.Annotations is { } annotations && annotations.TryGetValue(ServiceAnnotations.AllocatedFromPool, out var pool) ? pool : null;

    /// <summary>
    /// PUTs status.loadBalancer.ingress and the pool annotation on a copy (the cached object stays as the
    /// server last said, so a failed write is retried); a conflict is retried from a fresh read.
    /// </summary>
    private async Task<V1Service> WriteIngressAsync(V1Service service, List<string> desired, string? pool, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            var update = new V1Service
            {
                ApiVersion = service.ApiVersion,
                Kind = service.Kind,
                Metadata = KubeJson.Clone(service.Metadata),
                Spec = service.Spec,
                Status = new V1ServiceStatus
                {
                    Conditions = service.Status?.Conditions,
                    LoadBalancer = new V1LoadBalancerStatus { Ingress = [.. desired.Select(ip => new V1LoadBalancerIngress { Ip = ip, IpMode = "VIP" })] },
                },
            };
            var annotations = update.Metadata.Annotations ??= new Dictionary<string, string>();
            if (pool is null)
            {
                annotations.Remove(ServiceAnnotations.AllocatedFromPool);
            }
            else
            {
                annotations[ServiceAnnotations.AllocatedFromPool] = pool;
            }

            try
            {
                return await client.ReplaceAsync(KubeResources.Services, service.Metadata.NamespaceProperty, service.Metadata.Name, update, "status", cancellationToken);
            }
            catch (KubeApiException e) when (e.StatusCode == HttpStatusCode.Conflict && attempt < ConflictRetries)
            {
                LogConflict(service.Metadata.NamespaceProperty, service.Metadata.Name, attempt);
                service = await client.GetAsync(KubeResources.Services, service.Metadata.NamespaceProperty, service.Metadata.Name, "status", cancellationToken);
            }
        }
    }

    /// <summary>Writes a pool's usage and its Valid condition, when they changed.</summary>
    public async Task WritePoolStatusAsync(V1Alpha1IPAddressPool pool, PoolStats? stats, string? problem, bool stale, CancellationToken cancellationToken)
    {
        var valid = problem is null;
        var message = valid ? "the pool is valid" : stale ? $"{problem}; still serving its last valid spec" : $"{problem}; the pool is not used";
        var condition = ValidCondition(
            Valid(pool.Status?.Conditions), valid, valid ? "Valid" : stale ? "InvalidSpecLastValidInUse" : "InvalidSpec", message, pool.Metadata.Generation);
        var status = new IPAddressPoolStatus
        {
            AssignedIPv4 = Saturate(stats?.AssignedIPv4),
            AvailableIPv4 = Saturate(stats?.AvailableIPv4),
            AssignedIPv6 = Saturate(stats?.AssignedIPv6),
            AvailableIPv6 = Saturate(stats?.AvailableIPv6),
            Assigned = stats is null ? "-" : PerFamily(stats.AssignedIPv4, stats.AssignedIPv6, stats),
            Available = stats is null ? "-" : PerFamily(stats.AvailableIPv4, stats.AvailableIPv6, stats),
            Conditions = [condition],
        };

        // Every pass, not only when the status changes: the recorder tells each problem once, and tells it
        // again when an earlier write of it failed.
        ReportValidity(pool, PoolEventKey(pool.Metadata.Name), valid, "InvalidPool", message);
        if (pool.Status is { } current && SameStatus(current, status))
        {
            return;
        }

        var patch = new JsonObject { ["status"] = JsonSerializer.SerializeToNode(status, KubeJson.Default.IPAddressPoolStatus) }.ToJsonString();
        await client.PatchAsync(KubeResources.Pools, pool.Metadata.NamespaceProperty, pool.Metadata.Name, patch, "status", cancellationToken);
    }

    /// <summary>Writes an advertisement's Valid condition when it changed, with a warning event when invalid.</summary>
    /// <param name="consequence">With a problem: what the speakers do about it (<see cref="ConfigValidator.Consequence"/>).</param>
    public async Task WriteAdvertisementStatusAsync(V1Alpha1L2Advertisement advertisement, string? problem, string? consequence, CancellationToken cancellationToken)
    {
        var valid = problem is null;
        var message = valid ? "the advertisement is valid" : $"{problem}; {consequence}";
        ReportValidity(advertisement, AdvertisementEventKey(advertisement.Metadata.Name), valid, "InvalidAdvertisement", message);
        var old = Valid(advertisement.Status?.Conditions);
        var condition = ValidCondition(old, valid, valid ? "Valid" : "InvalidSpec", message, advertisement.Metadata.Generation);
        if (old is not null && old.Status == condition.Status && old.Message == condition.Message && old.ObservedGeneration == condition.ObservedGeneration)
        {
            return;
        }

        var status = new L2AdvertisementStatus { Conditions = [condition] };
        var patch = new JsonObject { ["status"] = JsonSerializer.SerializeToNode(status, KubeJson.Default.L2AdvertisementStatus) }.ToJsonString();
        await client.PatchAsync(KubeResources.Advertisements, advertisement.Metadata.NamespaceProperty, advertisement.Metadata.Name, patch, "status", cancellationToken);
    }

    public static string PoolEventKey(string pool) => $"pool/{pool}";

    public static string AdvertisementEventKey(string advertisement) => $"l2advertisement/{advertisement}";

    /// <summary>A warning event while an object is invalid; once valid again, its next problem is news again.</summary>
    private void ReportValidity(IKubernetesObject<V1ObjectMeta> target, string key, bool valid, string reason, string message)
    {
        if (valid)
        {
            _events.Forget(key);
        }
        else
        {
            _events.Post(target, key, "Warning", reason, message);
        }
    }

    private static V1Condition? Valid(IList<V1Condition>? conditions) => conditions?.FirstOrDefault(c => c.Type == "Valid");

    /// <summary>The Valid condition replacing <paramref name="old"/>; its transition time moves only when its status flips.</summary>
    private static V1Condition ValidCondition(V1Condition? old, bool valid, string reason, string message, long? generation)
    {
        var status = valid ? "True" : "False";
        return new V1Condition
        {
            Type = "Valid",
            Status = status,
            Reason = reason,
            Message = message,
            ObservedGeneration = generation,
            LastTransitionTime = old?.Status == status ? old.LastTransitionTime : DateTime.UtcNow,
        };
    }

    private static long? Saturate(UInt128? value) => value is null ? null : value > long.MaxValue ? long.MaxValue : (long)value.Value;

    private static string PerFamily(UInt128 v4, UInt128 v6, PoolStats stats)
    {
        var parts = new List<string>();
        if (stats.AssignedIPv4 + stats.AvailableIPv4 > 0)
        {
            parts.Add($"{v4} IPv4");
        }

        if (stats.AssignedIPv6 + stats.AvailableIPv6 > 0)
        {
            parts.Add($"{v6} IPv6");
        }

        return parts.Count == 0 ? "0" : string.Join(", ", parts);
    }

    /// <summary>Whether two statuses say the same (the conditions' transition times aside).</summary>
    private static bool SameStatus(IPAddressPoolStatus a, IPAddressPoolStatus b) =>
        a.AssignedIPv4 == b.AssignedIPv4 && a.AvailableIPv4 == b.AvailableIPv4
        && a.AssignedIPv6 == b.AssignedIPv6 && a.AvailableIPv6 == b.AvailableIPv6
        && a.Assigned == b.Assigned && a.Available == b.Available
        && (a.Conditions is null) == (b.Conditions is null)
        && Conditions(a).SequenceEqual(Conditions(b));

    private static IEnumerable<(string Type, string Status, string Reason, string Message, long? ObservedGeneration)> Conditions(IPAddressPoolStatus s) =>
        (s.Conditions ?? []).Select(c => (c.Type, c.Status, c.Reason, c.Message, c.ObservedGeneration));

    [LoggerMessage(Level = LogLevel.Debug, Message = "Status of Service {Namespace}/{Name} changed under us (attempt {Attempt}); retrying from a fresh read")]
    private partial void LogConflict(string @namespace, string name, int attempt);
}
