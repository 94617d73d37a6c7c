using LbAllocator.Core;

namespace LbAllocator.Core.Tests;

/// <summary>MetalLB's Service annotations read as ours: ours first, then metallb.io/, then metallb.universe.tf/.</summary>
public class MetalLbAnnotationsTests
{
    private static ServiceInfo Svc(Dictionary<string, string> annotations) => new()
    {
        Namespace = "default",
        Name = "s",
        Annotations = annotations,
        Ports = [new ServicePort("TCP", 80)],
    };

    [Fact]
    public void Ours_wins_then_metallb_io_then_metallb_universe_tf_each_annotation_on_its_own()
    {
        var adopted = MetalLbAnnotations.Adopt(Svc(new()
        {
            [ServiceAnnotations.AddressPool] = "ours",
            ["metallb.io/address-pool"] = "theirs",
            ["metallb.io/loadBalancerIPs"] = "192.0.2.5",
            ["metallb.universe.tf/loadBalancerIPs"] = "192.0.2.6",
            ["metallb.universe.tf/allow-shared-ip"] = "key",
        }));

        Assert.Equal("ours", adopted.Annotations[ServiceAnnotations.AddressPool]);
        Assert.Equal("192.0.2.5", adopted.Annotations[ServiceAnnotations.LoadBalancerIPs]);
        Assert.Equal("key", adopted.SharingKey);
        Assert.Equal(ServiceAnnotations.AddressPool, adopted.AnnotationName(ServiceAnnotations.AddressPool));
        Assert.Equal("metallb.io/loadBalancerIPs", adopted.AnnotationName(ServiceAnnotations.LoadBalancerIPs));
    }

    [Fact]
    public void A_Service_without_them_is_left_as_it_is()
    {
        var service = Svc(new() { ["example.com/other"] = "x" });

        Assert.Same(service, MetalLbAnnotations.Adopt(service));
    }

    [Fact]
    public void A_bad_value_is_reported_under_the_annotation_the_user_wrote()
    {
        var pool = ConfigValidator.Validate([new PoolSpec("web", ["192.0.2.0/29"])], []).Pools;
        var allocator = new Allocator(pools: pool);

        var outcome = allocator.Reconcile(MetalLbAnnotations.Adopt(Svc(new() { ["metallb.universe.tf/loadBalancerIPs"] = "192.0.2.999" })));

        var kept = Assert.IsType<AllocationOutcome.KeptInvalid>(outcome);
        Assert.StartsWith("annotation metallb.universe.tf/loadBalancerIPs: ", kept.Reason);
        // And with the address it asked for, from the pool that holds it.
        var served = allocator.Reconcile(MetalLbAnnotations.Adopt(Svc(new() { ["metallb.universe.tf/loadBalancerIPs"] = "192.0.2.3" })));
        Assert.Equal("192.0.2.3", Assert.IsType<AllocationOutcome.Assigned>(served).Ips.Single().ToString());
    }
}
