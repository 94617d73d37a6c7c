using System.ComponentModel.DataAnnotations;

namespace LbAllocator.Hosting;

/// <summary>
/// The Kubernetes client's rate limit (kube components' --kube-api-qps and --kube-api-burst): a token bucket in front
/// of every request the process starts, Lease renewals excepted. It bounds what one process can do to the API server
/// when something loops; it is no pacer for ordinary work, so the defaults are sized to each component's bursts.
/// </summary>
public sealed class KubeClientOptions : IValidatableObject
{
    public const string Section = "KubernetesClient";

    /// <summary>Requests a second, sustained; 0: no client-side limit (the server's API Priority and Fairness alone).</summary>
    public double Qps { get; set; }

    /// <summary>Requests that may start at once after a quiet spell.</summary>
    public int Burst { get; set; }

    /// <summary>
    /// The controller writes a status per Service: its bucket holds a burst of 1,000 new Services (the controller bench's,
    /// written at about 220/s on its machine, bench/RESULTS.md), so that burst is not slowed, while a write loop is held
    /// to 100/s once the bucket is empty. The speaker starts with 7 lists and 7 watches and relists as many after an API
    /// server restart (within its burst of 50), and writes statuses through 4 workers; 20/s lets a takeover of a few
    /// hundred Services show in ServiceL2Status within seconds. client-go's own default (5/10) fits neither:
    /// kube-controller-manager uses 20/30, kubelet and the scheduler 50/100.
    /// </summary>
    public static KubeClientOptions DefaultsFor(string component) => component == "controller"
        ? new KubeClientOptions { Qps = 100, Burst = 1000 }
        : new KubeClientOptions { Qps = 20, Burst = 50 };

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Qps < 0 || double.IsNaN(Qps) || double.IsInfinity(Qps))
        {
            yield return new ValidationResult($"Qps ({Qps}) must be 0 (no limit) or a positive number of requests a second", [nameof(Qps)]);
        }

        if (Burst < 1)
        {
            yield return new ValidationResult($"Burst ({Burst}) must be at least 1", [nameof(Burst)]);
        }
    }
}
