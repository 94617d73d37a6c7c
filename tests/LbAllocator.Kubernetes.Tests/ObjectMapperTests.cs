using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes.Crds;

namespace LbAllocator.Kubernetes.Tests;

public class ObjectMapperTests
{
    [Fact]
    public void A_service_maps_every_field_the_allocator_uses()
    {
        var service = new V1Service
        {
            Metadata = new V1ObjectMeta
            {
                Name = "web",
                NamespaceProperty = "shop",
                Labels = new Dictionary<string, string> { ["app"] = "web" },
                Annotations = new Dictionary<string, string> { [ServiceAnnotations.AllowSharedIp] = "k" },
            },
            Spec = new V1ServiceSpec
            {
                Type = "LoadBalancer",
                LoadBalancerClass = "example.com/lb",
                LoadBalancerIP = "192.0.2.4",
                IpFamilyPolicy = "PreferDualStack",
                IpFamilies = ["IPv6", "IPv4"],
                Ports = [new V1ServicePort { Port = 53, Protocol = "UDP" }, new V1ServicePort { Port = 80 }],
                ExternalTrafficPolicy = "Local",
                Selector = new Dictionary<string, string> { ["app"] = "web" },
            },
            Status = new V1ServiceStatus
            {
                LoadBalancer = new V1LoadBalancerStatus
                {
                    Ingress = [new V1LoadBalancerIngress { Ip = "192.0.2.4" }, new V1LoadBalancerIngress { Hostname = "lb.example" }],
                },
            },
        };

        var info = ObjectMapper.ToServiceInfo(service, new Dictionary<string, string> { ["tier"] = "gold" });

        Assert.Equal("shop/web", info.Key);
        Assert.Equal("LoadBalancer", info.Type);
        Assert.Equal("example.com/lb", info.LoadBalancerClass);
        Assert.Equal("192.0.2.4", info.LoadBalancerIP);
        Assert.Equal("PreferDualStack", info.IpFamilyPolicy);
        Assert.Equal(["IPv6", "IPv4"], info.IpFamilies);
        Assert.Equal([new ServicePort("UDP", 53), new ServicePort("TCP", 80)], info.Ports);
        Assert.Equal("Local", info.TrafficPolicy);
        Assert.Equal("web", info.Selector["app"]);
        Assert.Equal("web", info.Labels["app"]);
        Assert.Equal("gold", info.NamespaceLabels!["tier"]);
        Assert.Equal("k", info.SharingKey);
        Assert.Equal(["192.0.2.4"], info.IngressIps);
    }

    [Fact]
    public void A_bare_service_gets_the_api_server_defaults()
    {
        var info = ObjectMapper.ToServiceInfo(new V1Service { Metadata = new V1ObjectMeta { Name = "x" } }, null);

        Assert.Equal("default/x", info.Key);
        Assert.Equal("ClusterIP", info.Type);
        Assert.Equal("Cluster", info.TrafficPolicy);
        Assert.Empty(info.IngressIps);
        Assert.False(info.NamespaceKnown); // no namespace labels given: its namespace is not known
    }

    [Fact]
    public void A_pool_maps_addresses_flags_and_selectors()
    {
        var pool = new V1Alpha1IPAddressPool
        {
            Metadata = new V1ObjectMeta { Name = "p", Labels = new Dictionary<string, string> { ["zone"] = "a" } },
            Spec = new IPAddressPoolSpec
            {
                Addresses = ["192.0.2.0/24"],
                AutoAssign = false,
                AvoidBuggyIPs = true,
                ServiceAllocation = new Crds.ServiceAllocationSpec
                {
                    Priority = 5,
                    Namespaces = ["a"],
                    NamespaceSelectors = [new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["tier"] = "gold" } }],
                    ServiceSelectors = [new V1LabelSelector { MatchExpressions = [new V1LabelSelectorRequirement { Key = "app", OperatorProperty = "Exists" }] }],
                },
            },
        };

        var spec = ObjectMapper.ToPoolSpec(pool);
        var validated = ConfigValidator.Validate([spec], []);

        Assert.Empty(validated.Problems);
        var result = Assert.Single(validated.Pools);
        Assert.False(result.AutoAssign);
        Assert.True(result.AvoidBuggyIPs);
        Assert.Equal(5, result.Allocation!.Priority);
        Assert.Equal("a", result.Labels["zone"]);
        Assert.True(result.Allocation.NamespaceSelectors[0].Matches(new Dictionary<string, string> { ["tier"] = "gold" }));
        Assert.False(result.Allocation.ServiceSelectors[0].Matches(new Dictionary<string, string>()));
    }
}
