using System.ComponentModel.DataAnnotations;
using LbAllocator.Core;
using System.Text.RegularExpressions;

namespace LbAllocator.Speaker;

/// <summary>Speaker settings, bound from configuration (command line, environment) and validated at start.</summary>
public sealed class SpeakerOptions : IValidatableObject
{
    public const string Section = "Speaker";

    /// <summary>Where the pools, advertisements, ServiceL2Statuses and the speakers' leases live.</summary>
    public string Namespace { get; set; } = "lballocator-system";

    /// <summary>This node's name, from NODE_NAME (the downward API) in the DaemonSet.</summary>
    [Required(ErrorMessage = "NodeName is required: set NODE_NAME or pass --node")]
    public string NodeName { get; set; } = "";

    public string? Kubeconfig { get; set; }

    /// <summary>The spec.loadBalancerClass announced; empty announces Services without a class.</summary>
    public string? LoadBalancerClass { get; set; }

    /// <summary>
    /// How long a speaker's lease counts as renewed after its last renewal. Liveness is judged on the LAN, never by the
    /// lease: only a speaker that hears nobody asks whether another still renews its lease, and waits this long after a
    /// silent one's last renewal before it answers alone.
    /// </summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>How often each speaker renews its lease: the steady-state API cost, one write per node per interval (kubelet's pace).</summary>
    public TimeSpan RenewInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How often each speaker beats to each of its ring neighbours on the interfaces it announces on.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// A speaker unheard by its ring neighbours for this long is suspected by them (each judged by the longer of its and
    /// the judge's), and dead once a majority of them suspect it. Five heartbeats: failover under a second with room to
    /// spare; the speaker itself stops answering a little before, when it cannot show that its neighbours hear it.
    /// </summary>
    public TimeSpan DeadInterval { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Gratuitous ARP / unsolicited NA rounds sent on taking an address over, the first at once.</summary>
    [Range(1, 100)]
    public int GratuitousCount { get; set; } = 5;

    public TimeSpan GratuitousInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Each owned address is announced again on each of its interfaces once per this interval, the addresses spread
    /// evenly over it, so switches that age a quiet address out of their tables (often after 300 s) never forget
    /// where it lives. Zero turns it off.
    /// </summary>
    public TimeSpan GratuitousRefreshInterval { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Interfaces never used unless an L2Advertisement names them: container, CNI and tunnel devices.</summary>
    public string ExcludeInterfaces { get; set; } =
        "^(lo|docker.*|cni.*|cbr.*|flannel.*|cali.*|cilium.*|lxc.*|veth.*|vxlan.*|tunl.*|weave.*|kube-ipvs.*|genev.*|tap.*|virbr.*|kube-bridge|nodelocaldns)$";

    /// <summary>How often interfaces are rescanned even without a netlink change notification.</summary>
    public TimeSpan InterfaceRescanInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The longest any status or event write may take. These run off the decision path, so this bounds how stale
    /// the API's view gets behind a hung server, not how long answering waits.
    /// </summary>
    public TimeSpan ApiTimeout { get; set; } = TimeSpan.FromSeconds(5);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (ApiTimeout <= TimeSpan.Zero)
        {
            yield return new ValidationResult($"ApiTimeout ({ApiTimeout}) must be positive", [nameof(ApiTimeout)]);
        }

        if (!Names.IsDnsLabel(Namespace))
        {
            yield return new ValidationResult($"Namespace \"{Namespace}\" is not a valid namespace name (lowercase letters, digits and '-', at most 63)", [nameof(Namespace)]);
        }

        if (!string.IsNullOrEmpty(NodeName) && !Names.IsDnsSubdomain(NodeName))
        {
            yield return new ValidationResult($"NodeName \"{NodeName}\" is not a valid node name", [nameof(NodeName)]);
        }

        if (!(RenewInterval > TimeSpan.Zero && RenewInterval * 2 <= LeaseDuration))
        {
            yield return new ValidationResult(
                $"RenewInterval ({RenewInterval}) must be positive and at most half of LeaseDuration ({LeaseDuration}), so one lost renewal does not kill the speaker",
                [nameof(RenewInterval), nameof(LeaseDuration)]);
        }

        if (!(HeartbeatInterval >= TimeSpan.FromMilliseconds(1) && HeartbeatInterval * 3 <= DeadInterval && DeadInterval <= Lan.Membership.MaxDeadInterval))
        {
            yield return new ValidationResult(
                $"HeartbeatInterval ({HeartbeatInterval}) must be at least 1 ms and at most a third of DeadInterval ({DeadInterval}), which is at most {Lan.Membership.MaxDeadInterval.TotalSeconds:0} s, so two lost heartbeats do not kill a speaker",
                [nameof(HeartbeatInterval), nameof(DeadInterval)]);
        }

        if (GratuitousInterval <= TimeSpan.Zero)
        {
            yield return new ValidationResult($"GratuitousInterval ({GratuitousInterval}) must be positive", [nameof(GratuitousInterval)]);
        }

        if (GratuitousRefreshInterval != TimeSpan.Zero && GratuitousRefreshInterval < TimeSpan.FromSeconds(1))
        {
            yield return new ValidationResult(
                $"GratuitousRefreshInterval ({GratuitousRefreshInterval}) must be 0 (off) or at least 1 s",
                [nameof(GratuitousRefreshInterval)]);
        }

        if (InterfaceRescanInterval <= TimeSpan.Zero)
        {
            yield return new ValidationResult($"InterfaceRescanInterval ({InterfaceRescanInterval}) must be positive", [nameof(InterfaceRescanInterval)]);
        }

        string? regexError = null;
        try
        {
            _ = new Regex(ExcludeInterfaces);
        }
        catch (ArgumentException e)
        {
            regexError = $"ExcludeInterfaces is not a valid regular expression: {e.Message}";
        }

        if (regexError is not null)
        {
            yield return new ValidationResult(regexError, [nameof(ExcludeInterfaces)]);
        }
    }
}
