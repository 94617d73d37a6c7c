using k8s.Models;
using LbAllocator.Kubernetes.Crds;

namespace LbAllocator.Speaker;

/// <summary>
/// What the speaker's caches keep of Services and ServiceL2Statuses: only what it reads. Cached objects are most of a
/// speaker's heap with many VIPs, and a DaemonSet pays for it on every node (bench/RESULTS.md, issue 14).
/// </summary>
internal static class SpeakerTrims
{
    private const string OurAnnotations = "lballocator.io/";

    /// <summary>
    /// The election reads a Service's type, class, traffic policy, labels, our annotations and ingress addresses;
    /// events name it by its metadata. Its ports, cluster IPs, selector and other annotations (kubectl's
    /// last-applied copy of the whole object among them) nothing here reads.
    /// </summary>
    public static void Service(V1Service service)
    {
        if (service.Spec is { } spec)
        {
            service.Spec = new V1ServiceSpec { Type = spec.Type, LoadBalancerClass = spec.LoadBalancerClass, ExternalTrafficPolicy = spec.ExternalTrafficPolicy };
        }

        if (service.Metadata.Annotations is { } annotations)
        {
            service.Metadata.Annotations = annotations.Any(a => !a.Key.StartsWith(OurAnnotations, StringComparison.Ordinal))
                ? annotations.Where(a => a.Key.StartsWith(OurAnnotations, StringComparison.Ordinal)).ToDictionary(StringComparer.Ordinal)
                : annotations;
        }

        if (service.Status?.LoadBalancer?.Ingress is { } ingress)
        {
            service.Status = new V1ServiceStatus { LoadBalancer = new V1LoadBalancerStatus { Ingress = [.. ingress.Select(i => new V1LoadBalancerIngress { Ip = i.Ip, Hostname = i.Hostname })] } };
        }
        else
        {
            service.Status = null;
        }
    }

    /// <summary>
    /// A status is read whole (its writers read, modify and write it back through the status subresource), except its
    /// labels: they are written at creation, for people to select by, and the status subresource ignores them.
    /// </summary>
    public static void Status(V1Alpha1ServiceL2Status status) => status.Metadata.Labels = null;
}
