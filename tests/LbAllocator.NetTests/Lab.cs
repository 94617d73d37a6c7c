using System.Globalization;
using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using LbAllocator.Controller;
using LbAllocator.Kubernetes.Crds;
using Microsoft.Extensions.Hosting;

namespace LbAllocator.NetTests;

/// <summary>
/// A small layer-2 network made of network namespaces: three "nodes" and a "client" on one bridge (which
/// lives in a namespace of its own), the test API server double reachable from each node through a
/// forwarder on the node's 127.0.0.1:6443, the controller in this process, and a speaker process per node.
/// Only documentation addresses are used (192.0.2.0/24, 2001:db8::/64); everything is deleted afterwards,
/// and namespaces left behind by a test run that died are removed before a new lab starts.
/// </summary>
public sealed partial class Lab : IAsyncLifetime
{
    public const string InstallNamespace = "lballocator-system";
    public static readonly string[] Nodes = ["node1", "node2", "node3"];

    /// <summary>The client's address on the LAN (nodes are .11, .12, .13).</summary>
    public const string ClientIp = "192.0.2.100";

    private readonly string _prefix = $"lbt{Environment.ProcessId}";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"lbt{Environment.ProcessId}");
    private readonly Dictionary<string, Shell.Background> _speakers = [];
    private readonly Dictionary<string, Shell.Background> _forwarders = [];
    private IHost? _controller;

    public LbAllocator.TestApiServer.TestApiServer Server { get; private set; } = null!;

    public k8s.Kubernetes Client { get; private set; } = null!;

    /// <summary>Node name to the MAC of its eth0, as the client sees it in ARP replies.</summary>
    public Dictionary<string, string> Macs { get; } = [];

    public string ClientNs => $"{_prefix}-client";

    public string ClientMac { get; private set; } = "";

    public string NodeNs(string node) => $"{_prefix}-{node}";

    private string LanNs => $"{_prefix}-lan";

    public IReadOnlyList<string> SpeakerLog(string node) => _speakers[node].Lines;

    /// <summary>Extra `lballocator speaker` options for every speaker (the benchmark's timings); none in the tests.</summary>
    public IReadOnlyList<string> SpeakerOptions { get; init; } = [];

    public async Task InitializeAsync()
    {
        await RemoveLeftoversAsync();
        Directory.CreateDirectory(_dir);
        await BuildNetworkAsync();

        var socket = Path.Combine(_dir, "api.sock");
        Server = await LbAllocator.TestApiServer.TestApiServer.StartAsync(unixSocket: socket);
        Client = Server.CreateClient();
        foreach (var node in Nodes)
        {
            RestoreApi(node);
        }

        await SeedAsync();
        File.WriteAllText(Path.Combine(_dir, "controller.kubeconfig"), LbAllocator.TestApiServer.TestApiServer.Kubeconfig(Server.Url.ToString()));
        File.WriteAllText(Path.Combine(_dir, "node.kubeconfig"), LbAllocator.TestApiServer.TestApiServer.Kubeconfig("http://127.0.0.1:6443"));
        _controller = ControllerHost.Build(new Dictionary<string, string?>
        {
            ["Controller:Kubeconfig"] = Path.Combine(_dir, "controller.kubeconfig"),
            ["Controller:Identity"] = "lab-controller",
            ["Status:Address"] = "127.0.0.1:0",
            ["Logging:LogLevel:Default"] = "Warning",
        });
        await _controller.StartAsync();
        foreach (var node in Nodes)
        {
            StartSpeaker(node);
        }

        await WaitForSpeakersAsync(Nodes);
    }

    public async Task DisposeAsync()
    {
        foreach (var speaker in _speakers.Values)
        {
            speaker.Dispose();
        }

        foreach (var forwarder in _forwarders.Values)
        {
            forwarder.Dispose();
        }

        if (_controller is not null)
        {
            await _controller.StopAsync();
            _controller.Dispose();
        }

        if (Server is not null)
        {
            await Server.DisposeAsync();
        }

        await DeleteNamespacesAsync(_prefix);
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Starts (or restarts) the speaker process of a node inside its namespace.</summary>
    public void StartSpeaker(string node)
    {
        if (_speakers.Remove(node, out var old))
        {
            old.Dispose();
        }

        // As the DaemonSet runs it: root, but NET_RAW as the only capability; JSON logs; status on 7472.
        _speakers[node] = new Shell.Background(
            "ip",
            ["netns", "exec", NodeNs(node), "setpriv", "--bounding-set=-all,+net_raw", "--inh-caps=-all", "--",
             "dotnet", CliPath, "speaker", "--kubeconfig", Path.Combine(_dir, "node.kubeconfig"), "--log-level", "Debug", "--log-format", "json",
             "--status-address", "0.0.0.0:7472", .. SpeakerOptions],
            new Dictionary<string, string> { ["NODE_NAME"] = node });
    }

    /// <summary>Cuts the node off from the API server (its forwarder and every connection through it), not from the LAN.</summary>
    public void CutApi(string node)
    {
        if (_forwarders.Remove(node, out var forwarder))
        {
            forwarder.Dispose();
        }
    }

    /// <summary>Gives the node its API server back at 127.0.0.1:6443 in its namespace.</summary>
    public void RestoreApi(string node) =>
        _forwarders[node] = new Shell.Background("ip", ["netns", "exec", NodeNs(node), "socat", "TCP-LISTEN:6443,bind=127.0.0.1,reuseaddr,fork", $"UNIX-CONNECT:{Path.Combine(_dir, "api.sock")}"]);

    /// <summary>GET from the node's speaker status endpoint (as the kubelet's probes and Prometheus do); status code and body.</summary>
    public async Task<(int Code, string Body)> SpeakerStatusAsync(string node, string path)
    {
        var (_, output) = await Shell.RunAsync("ip", "netns", "exec", NodeNs(node), "curl", "-s", "-w", "\n%{http_code}", $"http://127.0.0.1:7472{path}");
        var cut = output.LastIndexOf('\n');
        return (int.Parse(output[(cut + 1)..], System.Globalization.CultureInfo.InvariantCulture), output[..cut]);
    }

    public Shell.Background Speaker(string node) => _speakers[node];

    /// <summary>lballocator.dll in the CLI's output folder of the same configuration as this test build.</summary>
    private static string CliPath
    {
        get
        {
            // .../tests/LbAllocator.NetTests/bin/<Configuration>/<tfm>/
            var tfm = new DirectoryInfo(AppContext.BaseDirectory);
            var configuration = tfm.Parent!;
            var repo = configuration.Parent!.Parent!.Parent!.Parent!;
            return Path.Combine(repo.FullName, "src", "LbAllocator.Cli", "bin", configuration.Name, tfm.Name, "lballocator.dll");
        }
    }

    /// <summary>Waits until every named speaker has a lease (it started and reached the API server).</summary>
    public async Task WaitForSpeakersAsync(IEnumerable<string> nodes)
    {
        await Eventually.HoldsAsync(async () =>
        {
            var leases = await Client.CoordinationV1.ListNamespacedLeaseAsync(InstallNamespace);
            var missing = nodes.Where(n => !leases.Items.Any(l => l.Spec?.HolderIdentity == n)).ToList();
            return missing.Count == 0 ? null
                : $"no lease yet for {string.Join(", ", missing)}; their output:\n" + string.Join("\n", missing.Select(n => $"--- {n}:\n" + string.Join("\n", _speakers[n].Lines.TakeLast(20))));
        }, TimeSpan.FromSeconds(60));
    }

    /// <summary>The MAC that answers ARP for the address from the client, or null if nobody answers within a second.</summary>
    public async Task<string?> ArpingAsync(string ip)
    {
        var (_, output) = await Shell.RunAsync("ip", "netns", "exec", ClientNs, "arping", "-c", "1", "-w", "1", "-I", "eth0", ip);
        var match = ReplyMac().Match(output);
        return match.Success ? match.Groups[1].Value.ToLowerInvariant() : null;
    }

    /// <summary>The MAC that answers a Neighbor Solicitation for the address from the client, or null.</summary>
    public async Task<string?> Ndisc6Async(string ip)
    {
        var (_, output) = await Shell.RunAsync("ip", "netns", "exec", ClientNs, "ndisc6", "-1", "-r", "1", "-w", "1000", ip, "eth0");
        var match = TargetMac().Match(output);
        return match.Success ? match.Groups[1].Value.ToLowerInvariant() : null;
    }

    /// <summary>The node whose MAC answers ARP for the address, waiting until someone does.</summary>
    public async Task<string> WaitForArpOwnerAsync(string ip, string? not = null, TimeSpan? timeout = null)
    {
        string? owner = null;
        await Eventually.HoldsAsync(async () =>
        {
            var mac = await ArpingAsync(ip);
            owner = Macs.FirstOrDefault(kv => kv.Value == mac).Key;
            return owner is not null && owner != not ? null : $"ARP for {ip} answered by {mac ?? "nobody"}";
        }, timeout ?? TimeSpan.FromSeconds(30));
        return owner!;
    }

    public async Task<V1Service> CreateServiceAsync(string name, string? ip = null, string? policy = null, string[]? families = null)
    {
        var service = new V1Service
        {
            Metadata = new V1ObjectMeta
            {
                Name = name,
                NamespaceProperty = "default",
                Annotations = ip is null ? null : new Dictionary<string, string> { ["lballocator.io/loadBalancerIPs"] = ip },
            },
            Spec = new V1ServiceSpec
            {
                Type = "LoadBalancer",
                Ports = [new V1ServicePort { Port = 80, Protocol = "TCP" }],
                Selector = new Dictionary<string, string> { ["app"] = name },
                ExternalTrafficPolicy = policy,
                IpFamilies = families,
                IpFamilyPolicy = families is { Length: 2 } ? "RequireDualStack" : null,
            },
        };
        await Client.CoreV1.CreateNamespacedServiceAsync(service, "default");
        V1Service? addressed = null;
        await Eventually.HoldsAsync(async () =>
        {
            addressed = await Client.CoreV1.ReadNamespacedServiceAsync(name, "default");
            return addressed.Status?.LoadBalancer?.Ingress?.Count > 0 ? null : $"{name} has no address yet";
        }, TimeSpan.FromSeconds(30));
        return addressed!;
    }

    public async Task<V1Alpha1ServiceL2Status?> L2StatusAsync(string service)
    {
        var raw = await Client.CustomObjects.ListNamespacedCustomObjectAsync(Api.Group, Api.Version, InstallNamespace, "servicel2statuses");
        var list = KubernetesJson.Deserialize<V1Alpha1ServiceL2StatusList>(KubernetesJson.Serialize(raw));
        return list.Items?.FirstOrDefault(s => s.Status?.ServiceName == service);
    }

    private async Task BuildNetworkAsync()
    {
        await Shell.MustAsync("ip", "netns", "add", LanNs);
        await Shell.MustAsync("ip", "-n", LanNs, "link", "add", "br0", "type", "bridge");
        await Shell.MustAsync("ip", "-n", LanNs, "link", "set", "br0", "up");
        var members = Nodes.Select((n, i) => (Ns: NodeNs(n), Port: $"p{i + 1}", Host: 11 + i)).Append((Ns: ClientNs, Port: "pc", Host: 100));
        foreach (var (ns, port, host) in members)
        {
            await Shell.MustAsync("ip", "netns", "add", ns);
            // No duplicate address detection: the addresses are ours, and DAD would delay the test by seconds.
            await Shell.MustAsync("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0");
            await Shell.MustAsync("ip", "-n", LanNs, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns);
            await Shell.MustAsync("ip", "-n", LanNs, "link", "set", port, "master", "br0", "up");
            await Shell.MustAsync("ip", "-n", ns, "link", "set", "lo", "up");
            await Shell.MustAsync("ip", "-n", ns, "link", "set", "eth0", "up");
            await Shell.MustAsync("ip", "-n", ns, "addr", "add", $"192.0.2.{host}/24", "dev", "eth0");
            await Shell.MustAsync("ip", "-n", ns, "addr", "add", $"2001:db8::{host}/64", "dev", "eth0", "nodad");
        }

        foreach (var node in Nodes)
        {
            Macs[node] = (await Shell.MustAsync("ip", "netns", "exec", NodeNs(node), "cat", "/sys/class/net/eth0/address")).Trim();
        }

        ClientMac = (await Shell.MustAsync("ip", "netns", "exec", ClientNs, "cat", "/sys/class/net/eth0/address")).Trim();
    }

    private async Task SeedAsync()
    {
        await Client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = InstallNamespace } });
        await Client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = "default" } });
        foreach (var node in Nodes)
        {
            await Client.CoreV1.CreateNodeAsync(new V1Node { Metadata = new V1ObjectMeta { Name = node, Labels = new Dictionary<string, string> { ["kubernetes.io/hostname"] = node } } });
        }

        await Client.CustomObjects.CreateNamespacedCustomObjectAsync(
            new V1Alpha1IPAddressPool { Metadata = new V1ObjectMeta { Name = "lab" }, Spec = new IPAddressPoolSpec { Addresses = ["192.0.2.200-192.0.2.219", "2001:db8::200-2001:db8::21f"] } },
            Api.Group, Api.Version, InstallNamespace, "ipaddresspools");
        await Client.CustomObjects.CreateNamespacedCustomObjectAsync(
            new V1Alpha1L2Advertisement { Metadata = new V1ObjectMeta { Name = "lab" } },
            Api.Group, Api.Version, InstallNamespace, "l2advertisements");
    }

    /// <summary>Removes namespaces of earlier runs whose process is gone (a crashed or killed test run).</summary>
    private static async Task RemoveLeftoversAsync()
    {
        var (_, list) = await Shell.RunAsync("ip", "netns", "list");
        foreach (Match match in LeftoverNamespace().Matches(list))
        {
            var pid = int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
            if (!Directory.Exists($"/proc/{pid}"))
            {
                await DeleteNamespacesAsync($"lbt{pid}");
            }
        }
    }

    private static async Task DeleteNamespacesAsync(string prefix)
    {
        var (_, list) = await Shell.RunAsync("ip", "netns", "list");
        foreach (var name in list.Split('\n').Select(l => l.Split(' ')[0]).Where(n => n.StartsWith(prefix + "-", StringComparison.Ordinal)))
        {
            // Processes still inside would keep it alive: kill them first.
            var (_, pids) = await Shell.RunAsync("ip", "netns", "pids", name);
            foreach (var pid in pids.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                await Shell.RunAsync("kill", "-KILL", pid.Trim());
            }

            await Shell.RunAsync("ip", "netns", "delete", name);
        }
    }

    [GeneratedRegex(@"\[([0-9A-Fa-f:]{17})\]")]
    private static partial Regex ReplyMac();

    [GeneratedRegex(@"Target link-layer address:\s*([0-9A-Fa-f:]{17})")]
    private static partial Regex TargetMac();

    [GeneratedRegex(@"^lbt(\d+)-", RegexOptions.Multiline)]
    private static partial Regex LeftoverNamespace();

    private sealed class V1Alpha1ServiceL2StatusList
    {
        [System.Text.Json.Serialization.JsonPropertyName("items")]
        public IList<V1Alpha1ServiceL2Status>? Items { get; set; }
    }
}

internal static class Eventually
{
    /// <summary>
    /// Polls until the check returns null (holds); fails with the check's last complaint otherwise. An API
    /// error (the double may be failing requests on purpose) counts as "not yet".
    /// </summary>
    public static async Task HoldsAsync(Func<Task<string?>> check, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        string? complaint;
        while ((complaint = await Try()) is not null)
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"still not true after {timeout.TotalSeconds:F0} s: {complaint}");
            }

            await Task.Delay(100);
        }

        async Task<string?> Try()
        {
            try
            {
                return await check();
            }
            catch (k8s.Autorest.HttpOperationException e)
            {
                return $"API error {e.Response.StatusCode}";
            }
        }
    }
}
