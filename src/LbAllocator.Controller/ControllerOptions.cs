using System.ComponentModel.DataAnnotations;
using LbAllocator.Core;

namespace LbAllocator.Controller;

/// <summary>Controller settings, bound from configuration (command line, environment) and validated at start.</summary>
public sealed class ControllerOptions : IValidatableObject
{
    public const string Section = "Controller";

    /// <summary>Where the pools, advertisements and the leader lease live.</summary>
    public string Namespace { get; set; } = "lballocator-system";

    /// <summary>The spec.loadBalancerClass handled; empty handles Services without a class.</summary>
    public string? LoadBalancerClass { get; set; }

    /// <summary>Read MetalLB's Service annotations (metallb.io/ and metallb.universe.tf/) where ours are absent.</summary>
    public bool AcceptMetalLbAnnotations { get; set; }

    /// <summary>Path to a kubeconfig; empty uses KUBECONFIG, ~/.kube/config or the in-cluster service account.</summary>
    public string? Kubeconfig { get; set; }

    [Required]
    public string LeaseName { get; set; } = "lballocator-controller";

    /// <summary>This replica's name in the lease; defaults to the host (pod) name.</summary>
    public string Identity { get; set; } = Environment.MachineName;

    public bool LeaderElection { get; set; } = true;

    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(15);
    public TimeSpan RenewDeadline { get; set; } = TimeSpan.FromSeconds(10);
    public TimeSpan RetryPeriod { get; set; } = TimeSpan.FromSeconds(2);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!Names.IsDnsLabel(Namespace))
        {
            yield return new ValidationResult($"Namespace \"{Namespace}\" is not a valid namespace name (lowercase letters, digits and '-', at most 63)", [nameof(Namespace)]);
        }

        if (!(RetryPeriod > TimeSpan.Zero && RetryPeriod < RenewDeadline && RenewDeadline < LeaseDuration))
        {
            yield return new ValidationResult(
                $"lease timings must satisfy 0 < RetryPeriod ({RetryPeriod}) < RenewDeadline ({RenewDeadline}) < LeaseDuration ({LeaseDuration})",
                [nameof(RetryPeriod), nameof(RenewDeadline), nameof(LeaseDuration)]);
        }

        if (string.IsNullOrWhiteSpace(Identity))
        {
            yield return new ValidationResult("Identity must not be empty", [nameof(Identity)]);
        }
    }
}
