using System.Globalization;
using System.Text.Json.Nodes;
using k8s.Models;
using LbAllocator.Kubernetes.Client;

namespace LbAllocator.ApiRestartBench;

/// <summary>
/// What the kubelets of an idle cluster cost the API server: each node's Lease in kube-node-lease renewed (PUT) every
/// 10 s, and its Node status written (PATCH nodes/status, the conditions' heartbeat times) once per status period
/// (nodeStatusReportFrequency, 300 s by default), node i at offset i/N of the period, as kubelets that started at
/// different times.
/// </summary>
internal sealed class Kubelets : IAsyncDisposable
{
    public const string LeaseNamespace = "kube-node-lease";
    public static readonly TimeSpan LeaseRenewInterval = TimeSpan.FromSeconds(10);

    private static readonly DateTime Booted = DateTime.UtcNow;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task[] _running;
    private int _failures;

    private Kubelets(KubeApi api, IReadOnlyList<string> nodes, TimeSpan statusPeriod)
    {
        _running = [.. nodes.SelectMany((node, i) => new[]
        {
            EveryAsync(LeaseRenewInterval * i / nodes.Count, LeaseRenewInterval, RenewLease(api, node)),
            EveryAsync(statusPeriod * i / nodes.Count, statusPeriod, ct => api.PatchAsync(KubeResources.Nodes, null, node, StatusPatch(node, DateTime.UtcNow), "status", ct)),
        })];
    }

    /// <summary>Writes that failed (each is retried at its next turn, as a kubelet's).</summary>
    public int Failures => _failures;

    /// <summary>Starts a kubelet for each Node named.</summary>
    public static Kubelets Start(KubeApi api, IReadOnlyList<string> nodes, TimeSpan statusPeriod) => new(api, nodes, statusPeriod);

    /// <summary>Creates the Nodes with the status their kubelets report.</summary>
    public static async Task CreateNodesAsync(KubeApi api, IReadOnlyList<string> nodes, CancellationToken cancellationToken)
    {
        await Parallel.ForEachAsync(nodes, cancellationToken, async (node, ct) =>
        {
            await api.CreateAsync(KubeResources.Nodes, null, new V1Node
            {
                Metadata = new V1ObjectMeta { Name = node, Labels = new Dictionary<string, string> { ["kubernetes.io/hostname"] = node, ["kubernetes.io/os"] = "linux" } },
            }, ct);
            await api.PatchAsync(KubeResources.Nodes, null, node, StatusPatch(node, DateTime.UtcNow), "status", ct);
        });
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_running).ContinueWith(_ => { }, TaskScheduler.Default);
        _stop.Dispose();
    }

    /// <summary>The kubelet's status write: its conditions with a fresh heartbeat (the rest as a kubelet reports it).</summary>
    private static string StatusPatch(string node, DateTime heartbeat)
    {
        var at = heartbeat.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
        var since = Booted.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
        JsonObject Condition(string type, string status, string reason) => new()
        {
            ["type"] = type, ["status"] = status, ["reason"] = reason, ["lastHeartbeatTime"] = at, ["lastTransitionTime"] = since,
        };
        return new JsonObject
        {
            ["status"] = new JsonObject
            {
                ["conditions"] = new JsonArray(
                    Condition("MemoryPressure", "False", "KubeletHasSufficientMemory"), Condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                    Condition("PIDPressure", "False", "KubeletHasSufficientPID"), Condition("Ready", "True", "KubeletReady")),
                ["addresses"] = new JsonArray(
                    new JsonObject { ["type"] = "InternalIP", ["address"] = $"198.51.100.{(uint)node.GetHashCode(StringComparison.Ordinal) % 250 + 1}" },
                    new JsonObject { ["type"] = "Hostname", ["address"] = node }),
                ["capacity"] = new JsonObject { ["cpu"] = "8", ["memory"] = "32Gi", ["pods"] = "110", ["ephemeral-storage"] = "100Gi" },
                ["allocatable"] = new JsonObject { ["cpu"] = "7800m", ["memory"] = "31Gi", ["pods"] = "110", ["ephemeral-storage"] = "90Gi" },
                ["nodeInfo"] = new JsonObject
                {
                    ["machineID"] = node, ["systemUUID"] = node, ["bootID"] = node, ["kernelVersion"] = "6.1.0", ["osImage"] = "Debian GNU/Linux 12",
                    ["containerRuntimeVersion"] = "containerd://1.7.13", ["kubeletVersion"] = "v1.28.7", ["kubeProxyVersion"] = "v1.28.7",
                    ["operatingSystem"] = "linux", ["architecture"] = "amd64",
                },
            },
        }.ToJsonString();
    }

    /// <summary>The kubelet's lease renewal: created on its first turn, then replaced with a new renew time.</summary>
    private static Func<CancellationToken, Task> RenewLease(KubeApi api, string node)
    {
        V1Lease? lease = null;
        return async ct =>
        {
            if (lease is null)
            {
                lease = await api.CreateAsync(KubeResources.Leases, LeaseNamespace, new V1Lease
                {
                    Metadata = new V1ObjectMeta { Name = node },
                    Spec = new V1LeaseSpec { HolderIdentity = node, LeaseDurationSeconds = 40, RenewTime = DateTime.UtcNow },
                }, ct);
                return;
            }

            lease.Spec.RenewTime = DateTime.UtcNow;
            lease = await api.ReplaceAsync(KubeResources.Leases, LeaseNamespace, node, lease, cancellationToken: ct);
        };
    }

    /// <summary>Runs <paramref name="turn"/> after <paramref name="offset"/> and then every <paramref name="period"/>, on a fixed schedule.</summary>
    private async Task EveryAsync(TimeSpan offset, TimeSpan period, Func<CancellationToken, Task> turn)
    {
        var cancellationToken = _stop.Token;
        var start = TimeProvider.System.GetTimestamp() + (long)(offset.TotalSeconds * TimeProvider.System.TimestampFrequency);
        for (long k = 0; !cancellationToken.IsCancellationRequested; k++)
        {
            var due = start + (long)(period.TotalSeconds * k * TimeProvider.System.TimestampFrequency);
            var wait = TimeSpan.FromSeconds((double)(due - TimeProvider.System.GetTimestamp()) / TimeProvider.System.TimestampFrequency);
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }

            try
            {
                await turn(cancellationToken);
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested && e is KubeApiException or HttpRequestException)
            {
                Interlocked.Increment(ref _failures);
            }
        }
    }
}
