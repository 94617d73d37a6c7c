using LbAllocator.Core;
using Xunit;

namespace LbAllocator.Core.Tests;

/// <summary>externalTrafficPolicy Local: the nodes that may announce, as kube-proxy would send them traffic.</summary>
public class LocalEndpointsTests
{
    // Each endpoint as "node:ready/serving/terminating", with "-" for a condition left unset.
    [Theory]
    [InlineData("a:true/true/false b:false/false/false", "a")]
    [InlineData("a:-/-/- b:false/-/-", "a")] // unset ready means ready
    [InlineData("a:true/true/false b:false/true/true", "a")] // a ready endpoint exists: terminating ones do not count
    [InlineData("a:false/true/true", "a")] // one-replica rollout: only a serving terminating endpoint, which kube-proxy still uses
    [InlineData("a:false/-/true", "")] // terminating, serving unset: defers to ready (false)
    [InlineData("a:false/false/true b:false/false/false", "")] // terminating and no longer serving
    [InlineData("a:false/true/true b:false/true/true", "a,b")]
    [InlineData("", "")]
    public void Ready_endpoints_or_else_serving_terminating_ones(string endpoints, string expected)
    {
        var states = endpoints.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(e =>
        {
            var (node, conditions) = (e.Split(':')[0], e.Split(':')[1].Split('/').Select(c => c == "-" ? (bool?)null : bool.Parse(c)).ToArray());
            return new EndpointState(node, conditions[0], conditions[1], conditions[2]);
        });
        Assert.Equal(expected.Split(',', StringSplitOptions.RemoveEmptyEntries), LocalEndpoints.Nodes(states).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Endpoints_without_a_node_are_ignored() =>
        Assert.Empty(LocalEndpoints.Nodes([new EndpointState(null, true, true, false), new EndpointState("", true, true, false)]));
}
