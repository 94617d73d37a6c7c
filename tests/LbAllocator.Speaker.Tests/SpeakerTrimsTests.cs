using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes;
using LbAllocator.Kubernetes.Crds;

namespace LbAllocator.Speaker.Tests;

/// <summary>What the speaker's caches keep of a Service and a ServiceL2Status: everything it reads, nothing else.</summary>
public sealed class SpeakerTrimsTests
{
    [Fact]
    public void A_trimmed_Service_reads_the_same_to_the_speaker()
    {
        var service = FullService();
        var before = ObjectMapper.ToServiceInfo(FullService(), null);

        SpeakerTrims.Service(service);
        var after = ObjectMapper.ToServiceInfo(service, null);

        Assert.Equal(before.Key, after.Key);
        Assert.True(after.IsLoadBalancerFor("example.com/lb"));
        Assert.Equal(before.TrafficPolicy, after.TrafficPolicy);
        Assert.Equal(before.Labels, after.Labels);
        Assert.Equal("blue", after.Annotations[ServiceAnnotations.AllocatedFromPool]);
        Assert.Equal(before.IngressAddresses, after.IngressAddresses);
        Assert.Equal(["192.0.2.10", "2001:db8::10"], after.IngressIps);
        // Events name it by these.
        Assert.Equal("4a1c9e4e-2f57-4d6a-9d0b-6c1f3f2b7a11", service.Metadata.Uid);
        Assert.Equal("812", service.Metadata.ResourceVersion);

        // What nothing in the speaker reads is gone.
        Assert.Null(service.Spec.Ports);
        Assert.Null(service.Spec.ClusterIPs);
        Assert.Null(service.Spec.Selector);
        Assert.DoesNotContain("kubectl.kubernetes.io/last-applied-configuration", service.Metadata.Annotations.Keys);
        Assert.Null(service.Status.LoadBalancer.Ingress[0].Ports);
    }

    [Fact]
    public void A_Service_without_status_or_annotations_stays_so()
    {
        var service = new V1Service { Metadata = new V1ObjectMeta { Name = "plain", NamespaceProperty = "default" }, Spec = new V1ServiceSpec { Type = "ClusterIP" } };
        SpeakerTrims.Service(service);
        Assert.Null(service.Status);
        Assert.Null(service.Metadata.Annotations);
        Assert.Equal("ClusterIP", service.Spec.Type);
    }

    [Fact]
    public void A_trimmed_status_keeps_its_status_whole()
    {
        var status = new V1Alpha1ServiceL2Status
        {
            Metadata = new V1ObjectMeta { Name = "default-web-1a2b3c4d", NamespaceProperty = "lballocator-system", ResourceVersion = "77", Labels = new Dictionary<string, string> { ["lballocator.io/service-name"] = "web" } },
            Status = new ServiceL2StatusStatus
            {
                Node = "node1",
                ServiceName = "web",
                ServiceNamespace = "default",
                Interfaces = [new InterfaceInfo { Name = "eth0", Mac = "02:00:00:00:00:01" }],
                Conditions = [new V1Condition { Type = L2Conditions.Verified, Status = "True", Reason = "Answered", Message = "checked by node2" }],
            },
        };

        SpeakerTrims.Status(status);

        Assert.Null(status.Metadata.Labels);
        Assert.Equal("77", status.Metadata.ResourceVersion);
        Assert.Equal("node1", status.Status!.Node);
        Assert.Equal("02:00:00:00:00:01", Assert.Single(status.Status.Interfaces!).Mac);
        Assert.Equal("Answered", Assert.Single(status.Status.Conditions!).Reason);
    }

    /// <summary>A Service as `kubectl apply` and the controller leave it.</summary>
    private static V1Service FullService() => new()
    {
        Metadata = new V1ObjectMeta
        {
            Name = "web",
            NamespaceProperty = "shop",
            Uid = "4a1c9e4e-2f57-4d6a-9d0b-6c1f3f2b7a11",
            ResourceVersion = "812",
            Labels = new Dictionary<string, string> { ["app"] = "web", ["tier"] = "front" },
            Annotations = new Dictionary<string, string>
            {
                [ServiceAnnotations.AllocatedFromPool] = "blue",
                [ServiceAnnotations.AddressPool] = "blue",
                ["kubectl.kubernetes.io/last-applied-configuration"] = "{\"apiVersion\":\"v1\",\"kind\":\"Service\"}",
            },
        },
        Spec = new V1ServiceSpec
        {
            Type = "LoadBalancer",
            LoadBalancerClass = "example.com/lb",
            ExternalTrafficPolicy = "Local",
            ClusterIP = "10.96.0.10",
            ClusterIPs = ["10.96.0.10", "fd00::10"],
            IpFamilies = ["IPv4", "IPv6"],
            IpFamilyPolicy = "PreferDualStack",
            Selector = new Dictionary<string, string> { ["app"] = "web" },
            Ports = [new V1ServicePort { Name = "http", Port = 80, Protocol = "TCP", TargetPort = 8080, NodePort = 30080 }],
        },
        Status = new V1ServiceStatus
        {
            LoadBalancer = new V1LoadBalancerStatus
            {
                Ingress =
                [
                    new V1LoadBalancerIngress { Ip = "192.0.2.10", IpMode = "VIP", Ports = [new V1PortStatus { Port = 80, Protocol = "TCP" }] },
                    new V1LoadBalancerIngress { Ip = "2001:db8::10", IpMode = "VIP" },
                ],
            },
        },
    };
}
